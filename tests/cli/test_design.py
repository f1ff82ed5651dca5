"""``sciml-diffusion design`` on a tiny prior: proposes, writes, plots, refuses bad input."""

import numpy as np
import pytest
import xarray as xr

from sciml_diffusion.cli import main
from sciml_diffusion.fields import FieldDataset, Observations


@pytest.fixture
def sensor_file(field_file, tmp_path):
    data = FieldDataset.open(field_file)
    obs = Observations.per_variable(data, index=1, count=5, variables=["u"], noise_std=0.05)
    path = tmp_path / "obs.nc"
    obs.to_xarray().to_netcdf(path, engine="h5netcdf")
    return path


def _argv(prior_run, sensor_file, out, *extra):
    argv = ["design", "--checkpoint", str(prior_run), "--observations", str(sensor_file)]
    return [*argv, "--out", str(out), "--steps", "2", "--quiet", *extra]


@pytest.mark.parametrize("criterion", ["eig", "variance"])
def test_design_proposes_new_sensors_and_plots(
    prior_run, sensor_file, tmp_path, capsys, criterion
):
    out, png = tmp_path / "new.nc", tmp_path / "new.png"
    argv = _argv(prior_run, sensor_file, out, "--add", "3", "--members", "6", "--plot", str(png))
    assert main([*argv, "--criterion", criterion, "--exclude-boundary"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 3 proposed sensors" in printed and "batch EIG" in printed
    ds = xr.open_dataset(out)
    assert ds.sizes["sensor"] == 3 and ds.attrs["criterion"] == criterion
    assert ds.attrs["read"] == "u,u,u" and np.isnan(ds["u"].values).all()
    new = Observations.from_xarray(ds)
    old = Observations.from_xarray(xr.open_dataset(sensor_file))
    # new sensors are interior nodes not already holding a sensor
    assert not any(np.allclose(p, q) for p in new.coords for q in old.coords)
    assert ((new.coords > 0) & (new.coords < 1)).all()
    assert png.stat().st_size > 0
    assert main([*argv, "--criterion", criterion]) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_design_within_a_candidate_file(prior_run, sensor_file, tmp_path):
    allowed = Observations(np.array([[0.25, 0.25], [0.5, 0.5], [0.75, 0.5]]), variables=["u"])
    cand = tmp_path / "cand.nc"
    allowed.to_xarray().to_netcdf(cand, engine="h5netcdf")
    out = tmp_path / "new.nc"
    argv = _argv(prior_run, sensor_file, out, "--add", "2", "--criterion", "random")
    assert main([*argv, "--candidates", str(cand)]) == 0
    coords = Observations.from_xarray(xr.open_dataset(out)).coords
    assert all(any(np.allclose(p, q) for q in allowed.coords) for p in coords)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--add", "500"], "candidate readings remain"),
        (["--add", "5", "--members", "4"], "at least 7 members"),
        (["--add", "2", "--noise-std", "0"], "positive sensor noise std"),
        (["--add", "0"], "must be >= 1"),
    ],
)
def test_design_bad_input_is_one_line_exit_2(
    prior_run, sensor_file, tmp_path, capsys, extra, message
):
    out = tmp_path / "new.nc"
    assert main(_argv(prior_run, sensor_file, out, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_criterion_names_match_the_library():
    from sciml_diffusion.cli.design import CRITERION_NAMES
    from sciml_diffusion.inverse.design.selection import CRITERIA

    assert set(CRITERION_NAMES) == set(CRITERIA)
