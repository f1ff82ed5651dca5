"""``forecast train|run`` with ``--bf16``, ``--compile``, ``--pin-memory`` and ``--chunks``:
accepted, passed through to the config, lazy opening forced, and no-ops on CPU."""

import json

import pytest
import xarray as xr

import sciml_diffusion.forecast as forecast
from sciml_diffusion.cli import main
from tests.forecast.conftest import waves

TINY = ["--context", "1", "--horizon", "2", "--steps", "2", "--batch-size", "4", "--width", "8",
        "--modes", "3", "--device", "cpu", "--quiet"]  # fmt: skip


def test_train_flags_reach_the_config_and_chunks_open_lazily(tmp_path, monkeypatch):
    data = tmp_path / "waves.nc"
    waves(samples=2, steps=8).to_netcdf(data, engine="h5netcdf")
    seen = []

    def capture(train, val, settings, **kwargs):
        seen.append((dict(settings), train.is_lazy))
        return "a forecaster"

    monkeypatch.setattr(forecast, "fit", capture)
    base = ["forecast", "train", "--data", str(data), *TINY]
    flags = ["--bf16", "--compile", "--pin-memory", "--chunks", "3"]
    assert main([*base, "--out", str(tmp_path / "a"), *flags]) == 0
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    (fast, lazy), (plain, in_memory) = seen
    assert fast["bf16"] is True and fast["compile"] is True and fast["pin_memory"] is True
    assert not {"bf16", "compile", "pin_memory"} & set(plain)  # unset: the config decides
    assert lazy and not in_memory


@pytest.mark.parametrize("chunks", ["0", "many"])
def test_bad_chunks_is_a_usage_error(tmp_path, chunks, capsys):
    argv = ["forecast", "train", "--data", "x.nc", "--out", str(tmp_path), "--chunks", chunks]
    assert main(argv) == 2
    assert "--chunks" in capsys.readouterr().err


def test_bf16_train_and_run_on_cpu_are_identical(tmp_path):
    data = tmp_path / "waves.nc"
    waves(samples=2, steps=30).to_netcdf(data, engine="h5netcdf")
    base = ["forecast", "train", "--data", str(data), *TINY]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "fast"), "--bf16", "--pin-memory",
                 "--chunks", "2"]) == 0  # fmt: skip
    config = json.loads((tmp_path / "fast" / "config.json").read_text())["config"]
    assert config["bf16"] and config["pin_memory"] and not config["compile"]
    outputs = []
    for run, extra in (("plain", []), ("fast", ["--bf16"]), ("plain", ["--bf16"])):
        out = tmp_path / f"{run}{len(outputs)}.nc"
        argv = ["forecast", "run", "--checkpoint", str(tmp_path / run), "--initial", str(data),
                "--lead-times", "1-3", "--members", "2", "--out", str(out), *extra]  # fmt: skip
        assert main(argv) == 0
        with xr.open_dataset(out) as ds:
            outputs.append(ds.load())
    # lazy reading and bf16 on CPU change nothing: same weights, same forecasts
    assert outputs[0].identical(outputs[1]) and outputs[0].identical(outputs[2])
