"""FieldDataset layout, tensor views and file round trips (NetCDF, HDF5, Zarr, PDEBench)."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sciml_diffusion.fields import FieldDataset, GaussianRandomField, Grid, Normalizer


def random_dataset(shape=(6, 8), samples=3, variables=("a", "u"), seed=0, periodic=True):
    grid = Grid.regular(shape, periodic=periodic, units="m")
    grf = GaussianRandomField(2.0, 3.0)
    gen = torch.Generator().manual_seed(seed)
    fields = torch.stack([grf.sample(grid, samples, generator=gen) for _ in variables], dim=1)
    ds = FieldDataset.from_tensor(fields, variables, grid=grid, attrs={"source": "test", "n": 3})
    for v in variables:
        ds.xarray[v].attrs["units"] = "kg"
    return ds


def cf_climate_file(path):
    """A CF-1.8 file with a time axis, bounds, units and NaN over land."""
    time = pd.date_range("2000-01-01", periods=5, freq="D")
    lat = np.linspace(-60, 60, 7)
    lon = np.arange(0, 360, 30.0)
    rng = np.random.default_rng(0)
    sst = 15 + 5 * rng.standard_normal((5, 7, 12))
    sst[:, 2:4, 3:6] = np.nan  # a continent
    ds = xr.Dataset(
        {
            "sst": (
                ("time", "lat", "lon"),
                sst,
                {"units": "degC", "standard_name": "sea_surface_temperature"},
            ),
            "lat_bnds": (("lat", "bnds"), np.stack([lat - 10, lat + 10], 1)),
            "lon_bnds": (("lon", "bnds"), np.stack([lon - 15, lon + 15], 1)),
            "time_bnds": (("time", "bnds"), np.stack([time, time + pd.Timedelta("1D")], 1)),
        },
        coords={
            "time": ("time", time, {"standard_name": "time", "axis": "T"}),
            "lat": (
                "lat",
                lat,
                {"units": "degrees_north", "standard_name": "latitude", "bounds": "lat_bnds"},
            ),
            "lon": (
                "lon",
                lon,
                {"units": "degrees_east", "standard_name": "longitude", "bounds": "lon_bnds"},
            ),
        },
        attrs={"Conventions": "CF-1.8", "title": "synthetic SST"},
    )
    ds.to_netcdf(path, engine="h5netcdf")
    return sst


@pytest.mark.parametrize("suffix", [".nc", ".h5", ".zarr"])
def test_round_trip_keeps_values_coords_attrs(tmp_path, suffix):
    ds = random_dataset()
    path = tmp_path / f"data{suffix}"
    ds.save(path)
    back = FieldDataset.open(path)
    assert back.variables == ("a", "u")
    assert torch.equal(back.to_tensor(), ds.to_tensor())
    assert back.grid == ds.grid and back.grid.units == ("m", "m")
    assert back.xarray.attrs["source"] == "test" and back.xarray["a"].attrs["units"] == "kg"


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=st.lists(st.integers(2, 7), min_size=1, max_size=3),
    samples=st.integers(1, 3),
    time=st.one_of(st.none(), st.integers(1, 3)),
)
def test_tensor_round_trip_shapes(tmp_path, shape, samples, time):
    grid = Grid.regular(tuple(shape))
    lead = (samples,) if time is None else (samples, time)
    x = torch.randn(*lead, 2, *shape)
    ds = FieldDataset.from_tensor(x, ["p", "q"], grid=grid)
    assert ds.spatial_dims == grid.axes and ds.has_time == (time is not None)
    assert torch.equal(ds.to_tensor(), x)
    path = tmp_path / "rt.nc"
    ds.save(path)
    assert torch.equal(FieldDataset.open(path).to_tensor(), x)


def test_cf_file_with_time_bounds_and_nan_land(tmp_path):
    path = tmp_path / "sst.nc"
    sst = cf_climate_file(path)
    ds = FieldDataset.open(path)
    assert ds.variables == ("sst",)  # bounds are not fields
    assert ds.spatial_dims == ("lat", "lon")
    assert ds.grid.periodic == (False, True)
    x, mask = ds.to_tensor(), ds.mask()
    assert x.shape == (1, 5, 1, 7, 12) and mask.shape == x.shape
    assert not mask[0, :, 0, 2:4, 3:6].any() and mask.sum() == np.isfinite(sst).sum()
    assert (x[~mask] == 0).all() and not torch.isnan(x).any()
    norm = Normalizer.fit(ds)
    assert norm.mean[0] == pytest.approx(np.nanmean(sst)) and norm.std[0] == pytest.approx(
        np.nanstd(sst)
    )
    z = norm.normalize(x)[mask]
    assert float(z.mean()) == pytest.approx(0, abs=1e-5) and float(z.std()) == pytest.approx(
        1, abs=1e-2
    )
    assert "nan=" in ds.describe() and "time: 5 steps" in ds.describe()
    ds.save(tmp_path / "copy.nc")  # a decoded CF file saves back without hand-editing
    assert FieldDataset.open(tmp_path / "copy.nc").mask().sum() == mask.sum()


def test_pdebench_flat_layouts(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "burgers.hdf5"
    u = rng.standard_normal((4, 6, 16)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["tensor"] = u
        f["x-coordinate"] = np.linspace(0, 1, 16, endpoint=False)
        f["t-coordinate"] = np.linspace(0, 2, 7)
        f.attrs["Nu"] = 0.01
    ds = FieldDataset.open(path)
    assert ds.xarray["tensor"].dims == ("sample", "time", "x")
    assert ds.xarray.attrs["Nu"] == pytest.approx(0.01)
    assert np.allclose(ds.xarray["time"].values, np.linspace(0, 2, 7)[:6])
    assert torch.allclose(ds.to_tensor()[:, :, 0], torch.from_numpy(u))

    path = tmp_path / "darcy.hdf5"
    nu = rng.standard_normal((3, 8, 10))
    sol = rng.standard_normal((3, 1, 8, 10))
    with h5py.File(path, "w") as f:
        f["tensor"], f["nu"] = sol, nu
        f["x-coordinate"], f["y-coordinate"] = np.linspace(0, 1, 8), np.linspace(0, 1, 10)
    ds = FieldDataset.open(path, variables=["nu", "tensor"])
    assert ds.spatial_dims == ("y", "x") and ds.xarray["nu"].dims == ("sample", "y", "x")
    assert np.allclose(ds.xarray["nu"].values, nu.transpose(0, 2, 1))
    assert ds.to_tensor().shape == (3, 2, 10, 8)


def test_pdebench_grouped_layout(tmp_path):
    path = tmp_path / "rd.h5"
    with h5py.File(path, "w") as f:
        for s in range(2):
            g = f.create_group(f"{s:04d}")
            g["data"] = np.full((3, 4, 5, 2), float(s))
            g["grid/x"], g["grid/y"], g["grid/t"] = np.arange(4.0), np.arange(5.0), np.arange(3.0)
    ds = FieldDataset.open(path)
    assert ds.variables == ("u0", "u1") and ds.to_tensor().shape == (2, 3, 2, 5, 4)


def test_from_tensor_like_and_split():
    ds = random_dataset(samples=10)
    back = FieldDataset.from_tensor(ds.to_tensor() * 2, like=ds)
    assert back.xarray["a"].attrs["units"] == "kg" and back.xarray.attrs["source"] == "test"
    parts = ds.split([0.6, 0.4], seed=3)
    ids = [set(p.xarray["sample"].values.tolist()) for p in parts]
    assert [len(i) for i in ids] == [6, 4] and not ids[0] & ids[1]
    assert ids == [set(p.xarray["sample"].values.tolist()) for p in ds.split([0.6, 0.4], seed=3)]


def test_atomic_save_leaves_nothing_behind(tmp_path, monkeypatch):
    ds = random_dataset()
    path = tmp_path / "out.nc"
    ds.save(path)
    before = path.read_bytes()

    def broken(self, target, **kwargs):
        open(target, "wb").write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(KeyboardInterrupt):
        random_dataset(seed=1).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.nc"]


def test_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        FieldDataset.open(tmp_path / "missing.nc")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="damaged or not NetCDF/HDF5/Zarr"):
        FieldDataset.open(tmp_path / "notes.txt")
    ds = random_dataset()
    ds.save(tmp_path / "d.nc")
    with pytest.raises(
        ValueError, match=r"\['b'\] not in the data set; available field variables: \['a', 'u'\]"
    ):
        FieldDataset.open(tmp_path / "d.nc", variables=["a", "b"])
    odd = xr.Dataset({"v": (("i", "j"), np.zeros((2, 3)))})
    with pytest.raises(ValueError, match=r"cannot identify spatial dims among \['i', 'j'\]"):
        FieldDataset(odd)
    with pytest.raises(ValueError, match="unknown format"):
        ds.save(tmp_path / "d.csv")
    with pytest.raises(ValueError, match="3 channels but variables"):
        FieldDataset.from_tensor(torch.zeros(1, 3, 6, 8), ["a"], grid=ds.grid)
