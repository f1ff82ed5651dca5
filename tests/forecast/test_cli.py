"""`sciml-diffusion forecast train|run` and `sciml-diffusion evaluate`, on a generated data
set and on a CF lat/lon NetCDF as reanalysis files come (NaN/_FillValue land, latitude
north to south, longitudes 0..360, a noleap calendar)."""

import json

import numpy as np
import pytest
import xarray as xr

from sciml_diffusion.cli import main
from sciml_diffusion.fields.io import open_dataset
from tests.forecast.conftest import latlon, waves

SETTINGS = {
    "n_layers": 1,
    "warmup": 1,
    "sampling_steps": 2,
    "rolling_steps": 1,
    "val_fraction": 0.0,
    "checkpoint_every": 2,
    "device": "cpu",
}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SETTINGS))
    return path


def _train(data, run, method, config_file, *extra):
    return main([
        "forecast", "train", "--method", method, "--data", str(data), "--context", "2",
        "--horizon", "2", "--out", str(run), "--steps", "3", "--batch-size", "4",
        "--width", "8", "--modes", "3", "--config", str(config_file), "--quiet", *extra,
    ])  # fmt: skip


def test_train_run_evaluate_on_a_generated_data_set(tmp_path, config_file, capsys):
    data = tmp_path / "waves.nc"
    waves(samples=3, steps=10).to_netcdf(data, engine="h5netcdf")
    run = tmp_path / "run"
    assert _train(data, run, "dyffusion", config_file) == 0
    assert (run / "interpolator" / "checkpoint.pt").exists()
    assert (run / "forecaster" / "checkpoint.pt").exists()
    assert _train(data, run, "dyffusion", config_file, "--resume", "--steps", "4") == 0
    log = (run / "forecaster" / "log.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["step"] == 4
    initial = tmp_path / "initial.nc"
    waves(samples=3, steps=10).isel(time=slice(0, 3)).to_netcdf(initial, engine="h5netcdf")
    fc, png = tmp_path / "fc.nc", tmp_path / "fc.png"
    argv = ["forecast", "run", "--checkpoint", str(run), "--initial", str(initial),
            "--lead-times", "1-3,5", "--members", "3", "--out", str(fc)]  # fmt: skip
    assert main([*argv, "--plot", str(png)]) == 0
    ens = open_dataset(fc)
    assert ens["u"].dims == ("sample", "member", "lead_time", "y", "x")
    assert list(ens["lead_time"].values) == [1, 2, 3, 5]
    assert png.stat().st_size > 1000
    assert main(argv) == 2 and "exists" in capsys.readouterr().err
    scores, spng = tmp_path / "scores.nc", tmp_path / "scores.png"
    argv = ["evaluate", "--forecast", str(fc), "--truth", str(data), "--out", str(scores)]
    assert main([*argv, "--plot", str(spng)]) == 0
    result = open_dataset(scores)
    assert result["crps"].dims == ("variable", "lead_time")
    assert np.isfinite(result["crps"].values).all() and spng.exists()
    assert "CRPS" in capsys.readouterr().out


def test_cf_lat_lon_file_with_land_keeps_its_own_coordinates(tmp_path, config_file):
    ds = latlon(steps=12)
    data = tmp_path / "sst.nc"
    ds.to_netcdf(data, engine="h5netcdf", encoding={"sst": {"_FillValue": -999.0}})
    raw = xr.open_dataset(data, engine="h5netcdf", mask_and_scale=False)
    assert (raw["sst"].values == -999.0).any()  # land is stored as _FillValue
    run = tmp_path / "run"
    assert _train(data, run, "rolling", config_file) == 0
    initial = tmp_path / "initial.nc"
    ds.isel(time=slice(0, 4)).to_netcdf(initial, engine="h5netcdf")
    fc = tmp_path / "fc.nc"
    argv = ["forecast", "run", "--checkpoint", str(run), "--initial", str(initial),
            "--lead-times", "1,2,4", "--members", "2", "--out", str(fc)]  # fmt: skip
    assert main(argv) == 0
    ens = open_dataset(fc)
    np.testing.assert_array_equal(ens["lat"].values, ds["lat"].values)  # north to south
    np.testing.assert_array_equal(ens["lon"].values, ds["lon"].values)  # 0..360
    land = np.isnan(ds["sst"].isel(time=0).values)
    assert np.isnan(ens["sst"].values[..., land]).all()
    assert np.isfinite(ens["sst"].values[..., ~land]).all()
    valid = ens["valid_time"].values
    assert valid[0].calendar == "noleap" and str(valid[-1]) == "2001-03-04 00:00:00"
    scores = tmp_path / "scores.nc"
    argv = ["evaluate", "--forecast", str(fc), "--truth", str(data), "--out", str(scores)]
    assert main(argv) == 0
    assert np.isfinite(open_dataset(scores)["crps"].values).all()


def test_clear_errors(tmp_path, config_file, capsys):
    data = tmp_path / "waves.nc"
    waves(samples=2, steps=10).to_netcdf(data, engine="h5netcdf")
    flat = tmp_path / "flat.nc"
    waves(samples=2, steps=10).isel(time=0).to_netcdf(flat, engine="h5netcdf")
    short = tmp_path / "short.nc"
    waves(samples=2, steps=3).to_netcdf(short, engine="h5netcdf")
    run = tmp_path / "run"
    cases = [
        ((flat, run), "no 'time' dim"),
        ((short, run), "at least 4"),
        ((tmp_path / "missing.nc", run), "no data file"),
    ]
    for (file, out), message in cases:
        assert _train(file, out, "diffusion", config_file) == 2
        assert message in capsys.readouterr().err
    assert _train(data, run, "diffusion", config_file) == 0
    assert _train(data, run, "diffusion", config_file) == 2
    assert "--resume" in capsys.readouterr().err
    base = ["forecast", "run", "--checkpoint", str(run), "--initial", str(data)]
    fine = tmp_path / "fine.nc"
    waves(samples=1, steps=3, shape=(16, 16)).to_netcdf(fine, engine="h5netcdf")
    runs = [
        ([*base, "--lead-times", "1,3", "--no-rollout", "--out", "a.nc"], "beyond the horizon"),
        ([*base, "--lead-times", "x", "--out", "a.nc"], "--lead-times"),
        ([*base, "--lead-times", "1", "--out", str(tmp_path / "a.txt")], "suffix"),
        (
            [
                "forecast",
                "run",
                "--checkpoint",
                str(run),
                "--initial",
                str(fine),
                "--lead-times",
                "1",
                "--out",
                str(tmp_path / "b.nc"),
            ],
            "refusing",
        ),  # fmt: skip
    ]
    for argv, message in runs:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert main(["evaluate", "--forecast", str(data), "--truth", str(data), "--out",
                 str(tmp_path / "s.nc")]) == 2  # fmt: skip
    assert "not an ensemble forecast" in capsys.readouterr().err
