"""Climate files as real archives write them, through open -> tensor -> prior -> sample -> save.

The file has latitude stored north to south, longitudes 0-360 or -180-180, a CF time axis
``hours since 1-1-1 00:00:0.0`` in a non-standard calendar, a packed int16 variable with
``scale_factor``/``add_offset``/``_FillValue``, CF bounds, float32 coordinates, CF
attributes, and land as NaN. Outputs must look like the file: same coordinate order,
dtypes and attributes, bounds, packing, and land still NaN.
"""

import numpy as np
import pytest
import xarray as xr

from sciml_diffusion.cli import main
from sciml_diffusion.diffusion import Prior
from sciml_diffusion.fields import FieldDataset

NLAT, NLON, NT = 18, 30, 10
LAND = (slice(5, 9), slice(10, 15))
TINY = ["--steps", "2", "--batch-size", "2", "--width", "4", "--modes", "2", "--quiet"]


def climate_file(path, lon0=0.0, calendar="noleap"):
    lat = np.arange(85, -86, -10, dtype=np.float32)  # north to south
    lon = (lon0 + 12 * np.arange(NLON)).astype(np.float32)
    hours = 6.0 * np.arange(NT)
    rng = np.random.default_rng(0)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    sst = 15 + 10 * np.cos(np.deg2rad(la)) + np.sin(np.deg2rad(lo))
    sst = sst[None] + 0.5 * rng.standard_normal((NT, NLAT, NLON))
    sst[(slice(None), *LAND)] = np.nan
    coord = {"lat": "latitude", "lon": "longitude"}
    ds = xr.Dataset(
        {
            "sst": (
                ("time", "lat", "lon"),
                sst.astype(np.float32),
                {"standard_name": "sea_surface_temperature", "long_name": "SST", "units": "K"},
            ),
            "lat_bnds": (("lat", "nv"), np.stack([lat + 5, lat - 5], 1)),
            "lon_bnds": (("lon", "nv"), np.stack([lon - 6, lon + 6], 1)),
            "time_bnds": (("time", "nv"), np.stack([hours - 3, hours + 3], 1)),
        },
        coords={
            "lat": ("lat", lat, {"units": "degrees_north", "bounds": "lat_bnds"}),
            "lon": ("lon", lon, {"units": "degrees_east", "bounds": "lon_bnds"}),
            "time": (
                "time",
                hours,
                {"units": "hours since 1-1-1 00:00:0.0", "calendar": calendar, "axis": "T"},
            ),
        },
        attrs={"Conventions": "CF-1.8", "institution": "nowhere"},
    )
    for name, standard in coord.items():
        ds[name].attrs["standard_name"] = standard
    ds["time"].attrs["bounds"] = "time_bnds"
    packing = {"dtype": "int16", "scale_factor": 0.002, "add_offset": 20.0, "_FillValue": -32767}
    ds.to_netcdf(path, engine="h5netcdf", encoding={"sst": packing})
    return path


@pytest.fixture(params=[(0.0, "noleap"), (-180.0, "360_day"), (0.0, "standard")])
def real_file(request, tmp_path):
    """The file with 0-360 or -180-180 longitudes, in three calendars."""
    lon0, calendar = request.param
    return climate_file(tmp_path / "sst.nc", lon0, calendar), lon0, calendar


@pytest.fixture(params=[(0.0, "noleap"), (-180.0, "standard")])
def model_file(request, tmp_path):
    """Fewer variants for the tests that train a prior."""
    lon0, calendar = request.param
    return climate_file(tmp_path / "sst.nc", lon0, calendar), lon0, calendar


def raw(path):
    return xr.open_dataset(path, engine="h5netcdf", decode_times=False, mask_and_scale=False)


def test_open_decodes_and_orders_the_file(real_file):
    path, lon0, calendar = real_file
    ds = FieldDataset.open(path)
    grid = ds.grid
    assert grid.axes == ("lat", "lon") and grid.periodic == (False, True)
    assert np.all(np.diff(grid.coords[0]) > 0) and ds.decreasing == ("lat",)
    assert grid.bounds[1] == pytest.approx((lon0, lon0 + 360))
    sst = ds.xarray["sst"]
    assert sst.dtype.kind == "f" and ds.xarray["time"].encoding["calendar"] == calendar
    x, mask = ds.to_tensor(), ds.mask()
    assert x.shape == (1, NT, 1, NLAT, NLON) and np.isfinite(x.numpy()).all()
    # land rows 5..8 from the north are rows 9..12 from the south
    land = ~mask[0, 0, 0].numpy()
    assert land[NLAT - 9 : NLAT - 5, 10:15].all() and land.sum() == 4 * 5
    values = x[0, :, 0][mask[0, :, 0]].numpy()
    assert 10 < values.min() and values.max() < 30  # unpacked to physical units


def test_save_keeps_order_calendar_packing_bounds_and_attributes(real_file, tmp_path):
    path, _, calendar = real_file
    out = tmp_path / "copy.nc"
    FieldDataset.open(path).save(out)
    before, after = raw(path), raw(out)
    for name in ("lat", "lon", "time", "lat_bnds", "lon_bnds", "sst"):
        assert after[name].dtype == before[name].dtype, name
        np.testing.assert_array_equal(after[name].values, before[name].values, err_msg=name)
    assert after["time"].attrs["calendar"] == calendar
    assert after["time"].attrs["units"].startswith("hours since 0001-01-01")  # same origin
    assert (
        after["sst"].attrs["scale_factor"] == 0.002 and after["sst"].attrs["_FillValue"] == -32767
    )
    assert after.attrs["Conventions"] == "CF-1.8"
    for name in ("lat", "lon"):
        assert after[name].attrs["standard_name"] == before[name].attrs["standard_name"]


def test_prior_on_a_real_file_samples_like_the_file(model_file, tmp_path):
    path, lon0, _ = model_file
    run, out = tmp_path / "run", tmp_path / "samples.nc"
    argv = ["prior", "train", "--data", str(path), "--out", str(run), *TINY]
    assert main([*argv, "--sample-dim", "time"]) == 0
    assert (run / "layout.nc").exists()
    sample = ["prior", "sample", "--checkpoint", str(run), "--samples", "2", "--steps", "2"]
    assert main([*sample, "--out", str(out), "--quiet"]) == 0
    source, result = raw(path), raw(out)
    for name in ("lat", "lon", "lat_bnds", "lon_bnds"):
        assert result[name].dtype == source[name].dtype, name
        np.testing.assert_array_equal(result[name].values, source[name].values, err_msg=name)
        same = {k: v for k, v in source[name].attrs.items() if k != "_FillValue"}
        assert {k: result[name].attrs[k] for k in same} == same, name
    for key in ("standard_name", "long_name", "units"):
        assert result["sst"].attrs[key] == source["sst"].attrs[key], key
    assert result.attrs["Conventions"] == "CF-1.8"
    decoded = FieldDataset.open(out).file_order()["sst"].values  # north to south again
    assert np.isnan(decoded[(slice(None), *LAND)]).all()
    assert np.isfinite(decoded).sum() == 2 * (NLAT * NLON - 20)
    prior = Prior.load(run)
    assert prior.layout is not None and prior.grid.shape == (NLAT, NLON)


def test_outputs_made_like_the_file_keep_its_packing(model_file, tmp_path):
    import torch

    path, _, _ = model_file
    layout = FieldDataset.open(path).layout()
    fields = 15 + torch.rand(3, 1, NLAT, NLON)  # within the packing's range
    out = tmp_path / "made.nc"
    FieldDataset.from_tensor(fields, ["sst"], like=layout).save(out)
    source, result = raw(path), raw(out)
    assert result["sst"].dtype == np.int16
    for key in ("scale_factor", "add_offset", "_FillValue", "units", "standard_name"):
        assert result["sst"].attrs[key] == source["sst"].attrs[key], key
    np.testing.assert_array_equal(result["lat"].values, source["lat"].values)
    decoded = FieldDataset.open(out).file_order()["sst"].values
    assert np.isnan(decoded[(slice(None), *LAND)]).all() and np.isfinite(decoded).sum() == 3 * (
        NLAT * NLON - 20
    )
    expected = fields.numpy()[:, 0, ::-1]  # from_tensor takes south to north
    valid = np.isfinite(decoded)
    np.testing.assert_allclose(decoded[valid], expected[valid], atol=0.001 + 1e-6)


def test_resolution_on_a_non_square_grid_is_per_axis_or_a_factor(model_file, tmp_path, capsys):
    path, _, _ = model_file
    run = tmp_path / "run"
    argv = ["prior", "train", "--data", str(path), "--out", str(run), "--sample-dim", "time"]
    assert main([*argv, *TINY, "--resolution", "60"]) == 2
    assert "18x30, not square" in capsys.readouterr().err
    assert main([*argv, *TINY, "--resolution", "9,15"]) == 0
    assert Prior.load(run).grid.shape == (9, 15)
    out = tmp_path / "fine.nc"
    sample = ["prior", "sample", "--checkpoint", str(run), "--samples", "1", "--steps", "2"]
    assert main([*sample, "--resolution", "x2", "--out", str(out), "--quiet"]) == 0
    fine = FieldDataset.open(out)
    assert fine.grid.shape == (18, 30) and fine.decreasing == ("lat",)
    assert fine.xarray["sst"].attrs["units"] == "K" and fine.xarray["lat"].dtype == np.float32
    assert fine.mask().logical_not().sum() > 0  # land, moved onto the new grid


def test_time_is_not_taken_as_samples_unless_asked(model_file, tmp_path, capsys):
    path, _, _ = model_file
    argv = ["prior", "train", "--data", str(path), "--out", str(tmp_path / "r"), *TINY]
    assert main(argv) == 2
    assert "--sample-dim time" in capsys.readouterr().err
    ds = FieldDataset.open(path).stack_samples("time")
    assert len(ds) == NT and not ds.has_time


def test_values_beyond_the_packing_are_written_unpacked_not_wrapped(model_file, tmp_path):
    path, _, _ = model_file
    ds = FieldDataset.open(path)
    ds.xarray["sst"][:] = ds.xarray["sst"] + 1000  # far outside 20 +- 65.5
    with pytest.warns(RuntimeWarning, match="do not fit"):
        ds.save(tmp_path / "hot.nc")
    back = FieldDataset.open(tmp_path / "hot.nc").xarray["sst"]
    assert float(back.min()) > 1000


def test_data_near_the_float32_limit_stay_finite(tmp_path):
    import torch

    from sciml_diffusion.fields import Grid

    x = torch.full((1, 1, 4, 4), 3.3e38, dtype=torch.float64)
    x[..., 0, 0] = 5e38  # beyond float32
    ds = FieldDataset.from_tensor(x, ["a"], grid=Grid.regular((4, 4)))
    ds.save(tmp_path / "big.nc")
    assert np.isfinite(FieldDataset.open(tmp_path / "big.nc").xarray["a"].values).all()


@pytest.mark.parametrize("step, lon0", [(0.1, 0.0), (0.25, -180.0), (0.1, -179.95), (1 / 3, 0)])
@pytest.mark.parametrize("name", ["lon", "x"])
def test_fine_float32_longitudes_are_uniform_and_periodic(step, lon0, name):
    n = round(360 / step)
    lon = (lon0 + step * np.arange(n)).astype(np.float32)
    lat = np.linspace(-89.95, 89.95, 10).astype(np.float32)
    ds = xr.Dataset(
        {"t": (("lat", name), np.zeros((10, n), np.float32))},
        coords={
            "lat": ("lat", lat, {"units": "degrees_north"}),
            name: (name, lon, {"units": "degrees_east"}),
        },
    )
    grid = FieldDataset(ds).grid
    assert grid.periodic == (False, True) and grid.is_uniform
    assert grid.lengths[1] == pytest.approx(360, rel=1e-5)
