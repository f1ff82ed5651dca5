"""``--bf16``, ``--compile`` and ``--pin-memory``: accepted, passed through, no-ops on CPU."""

import pytest
import xarray as xr

import sciml_diffusion.diffusion as diffusion
from sciml_diffusion.cli import main
from sciml_diffusion.diffusion import acceleration


def test_train_flags_reach_the_config(field_file, tmp_path, monkeypatch):
    seen = []

    def capture(dataset, settings, **kwargs):
        seen.append(dict(settings))
        return "a prior"

    monkeypatch.setattr(diffusion, "train_prior", capture)
    base = ["prior", "train", "--data", str(field_file), "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a"), "--bf16", "--compile", "--pin-memory"]) == 0
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    assert seen[0]["bf16"] is True and seen[0]["compile"] is True
    assert seen[0]["pin_memory"] is True
    assert not {"bf16", "compile", "pin_memory"} & set(seen[1])  # unset: the config decides


def _read(path):
    with xr.open_dataset(path) as ds:
        return ds.load()


def test_bf16_sampling_and_reconstruct_on_cpu_are_identical(prior_run, field_file, tmp_path):
    base = ["prior", "sample", "--checkpoint", str(prior_run), "--samples", "2", "--steps", "3"]
    assert main([*base, "--quiet", "--out", str(tmp_path / "a.nc")]) == 0
    assert main([*base, "--quiet", "--bf16", "--out", str(tmp_path / "b.nc")]) == 0
    assert _read(tmp_path / "a.nc").identical(_read(tmp_path / "b.nc"))

    sensors = tmp_path / "sensors.nc"
    assert main(["observe", "--data", str(field_file), "--count", "5", "--out", str(sensors)]) == 0
    rec = ["reconstruct", "--checkpoint", str(prior_run), "--observations", str(sensors)]
    rec += ["--members", "2", "--steps", "2", "--noise-std", "0.01", "--quiet"]
    assert main([*rec, "--out", str(tmp_path / "r.nc")]) == 0
    assert main([*rec, "--bf16", "--out", str(tmp_path / "r16.nc")]) == 0
    a, b = _read(tmp_path / "r.nc"), _read(tmp_path / "r16.nc")
    assert a.drop_attrs().identical(b.drop_attrs())


def _broken_backend(graph, inputs):
    raise RuntimeError("no code generation here")


def test_compile_flag_compiles_and_falls_back_with_a_warning(prior_run, tmp_path, monkeypatch):
    monkeypatch.setattr(acceleration, "BACKEND", _broken_backend)
    base = ["prior", "sample", "--checkpoint", str(prior_run), "--samples", "1", "--steps", "2"]
    assert main([*base, "--quiet", "--out", str(tmp_path / "a.nc")]) == 0
    with pytest.warns(RuntimeWarning, match="runs eagerly"):
        assert main([*base, "--quiet", "--compile", "--out", str(tmp_path / "c.nc")]) == 0
    assert _read(tmp_path / "a.nc").identical(_read(tmp_path / "c.nc"))
