"""The observe, reconstruct and demo commands (tiny configurations)."""

import json

import numpy as np
import pytest
import xarray as xr

from sciml_diffusion import pdes
from sciml_diffusion.cli import main


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out), "--overwrite"]) == 0
    return out


def test_demo_writes_report_figure_and_metrics(demo_dir, capsys):
    for name in ("report.md", "reconstruction.png", "metrics.json", "posterior.nc"):
        assert (demo_dir / name).stat().st_size > 0
    metrics = json.loads((demo_dir / "metrics.json").read_text())
    assert set(metrics["scores"]) == {"a", "u"}
    assert 0 <= metrics["scores"]["a"]["error_rate"] <= 1
    assert metrics["sensors_on_u"] >= 1
    # a second run into the same folder is refused without --overwrite
    assert main(["demo", "--quick", "--out", str(demo_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_observe_then_reconstruct(demo_dir, tmp_path, capsys):
    data = pdes.get("darcy").generate(2, 12, seed=5)
    data.save(tmp_path / "data.nc")
    obs_file = tmp_path / "obs.nc"
    args = ["observe", "--data", str(tmp_path / "data.nc"), "--index", "1", "--count", "6"]
    args += ["--variables", "u", "--exclude-boundary", "--noise-std", "1e-5"]
    assert main([*args, "--out", str(obs_file)]) == 0
    obs = xr.open_dataset(obs_file)
    assert int(np.isfinite(obs["u"]).sum()) == 6
    assert main([*args, "--out", str(obs_file)]) == 2  # exists, no --overwrite

    post = tmp_path / "post.nc"
    rec = ["reconstruct", "--checkpoint", str(demo_dir / "prior"), "--observations"]
    rec += [str(obs_file), "--members", "2", "--steps", "2", "--out", str(post), "--quiet"]
    assert main([*rec, "--plot", str(tmp_path / "post.png")]) == 0
    ds = xr.open_dataset(post)
    assert ds["a"].dims == ("member", "y", "x") and ds.attrs["method"] == "mmps"
    assert (tmp_path / "post.png").exists()
    assert main(rec) == 2  # refuses to overwrite
    capsys.readouterr()
    missing = [*rec[:4], str(tmp_path / "none.nc"), *rec[5:]]
    missing[missing.index(str(post))] = str(tmp_path / "p2.nc")
    assert main(missing) == 2
    assert "no sensor file" in capsys.readouterr().err
    assert not (tmp_path / "p2.nc").exists()


def test_shipped_demo_prior_loads_and_reconstructs():
    from sciml_diffusion.cli.demo import CONFIGS, DEMO_PRIOR
    from sciml_diffusion.diffusion import Prior
    from sciml_diffusion.fields import Observations
    from sciml_diffusion.inverse import reconstruct

    prior = Prior.load(DEMO_PRIOR)
    assert prior.variables == ("a", "u")
    assert prior.grid.shape == (CONFIGS["default"]["resolution"],) * 2
    test = pdes.get("darcy").generate(1, prior.grid.shape[0], seed=CONFIGS["default"]["samples"])
    obs = Observations.per_variable(test, count=10, variables=["u"], exclude_boundary=True)
    ds = reconstruct(prior, obs, members=2, steps=2, noise_std=1e-4, progress=False)
    assert np.isfinite(ds["a"].values).all()
