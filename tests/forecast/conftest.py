import numpy as np
import pytest
import xarray as xr

from sciml_diffusion.fields import FieldDataset

TINY = dict(
    width=8,
    n_layers=1,
    n_modes=3,
    steps=3,
    batch_size=4,
    warmup=1,
    val_every=2,
    val_windows=4,
    checkpoint_every=2,
    device="cpu",
    context=2,
    horizon=2,
    sampling_steps=2,
    rolling_steps=1,
    val_fraction=0.0,
)

METHODS = ["diffusion", "dyffusion", "rolling"]


def waves(samples=3, steps=10, shape=(8, 8), seed=0) -> xr.Dataset:
    """Travelling waves ``u = sin(2 pi (x - c t) + phase)`` on the periodic unit square."""
    rng = np.random.default_rng(seed)
    y = np.arange(shape[0]) / shape[0]
    x = np.arange(shape[1]) / shape[1]
    t = 0.1 * np.arange(steps)
    phase = rng.uniform(0, 2 * np.pi, samples)
    u = np.sin(
        2
        * np.pi
        * (x[None, None, None, :] + 0.5 * y[None, None, :, None] - t[None, :, None, None])
        + phase[:, None, None, None]
    )
    u = u + 0.05 * rng.standard_normal(u.shape)
    coords = {
        "sample": np.arange(samples),
        "time": ("time", t),
        "y": ("y", y, {"axis": "Y", "periodic": 1}),
        "x": ("x", x, {"axis": "X", "periodic": 1}),
    }
    return xr.Dataset({"u": (("sample", "time", "y", "x"), u.astype(np.float32))}, coords=coords)


def latlon(steps=10, seed=0) -> xr.Dataset:
    """A CF lat/lon data set as reanalysis files come: latitude north to south, longitude
    0..360, a noleap calendar, NaN over a 'continent'."""
    import cftime

    rng = np.random.default_rng(seed)
    lat = np.linspace(60.0, -60.0, 7)  # north to south
    lon = np.arange(0.0, 360.0, 45.0)  # 0..315
    times = [
        cftime.DatetimeNoLeap(2001, 2, 25 + k) if k < 4 else cftime.DatetimeNoLeap(2001, 3, k - 3)
        for k in range(steps)
    ]
    t = np.arange(steps)[:, None, None]
    field = (
        15
        + 10 * np.cos(np.deg2rad(lat))[None, :, None]
        + 2 * np.sin(np.deg2rad(lon)[None, None, :] - 0.4 * t)
    )
    field = field + 0.1 * rng.standard_normal(field.shape)
    land = np.zeros((lat.size, lon.size), bool)
    land[2:4, 2:5] = True
    field[:, land] = np.nan
    ds = xr.Dataset(
        {"sst": (("time", "lat", "lon"), field.astype(np.float32), {"units": "degC"})},
        coords={
            "time": ("time", np.array(times, dtype=object)),
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
    )
    return ds


@pytest.fixture
def tiny():
    return dict(TINY)


@pytest.fixture(scope="session")
def wave_data():
    return FieldDataset(waves())
