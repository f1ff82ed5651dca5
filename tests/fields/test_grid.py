"""Grid conventions and resampling between grids."""

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from sciml_diffusion.fields import Grid, resample


def test_regular_conventions():
    periodic = Grid.regular(4, lengths=2.0, periodic=True)
    bounded = Grid.regular(5, lengths=2.0)
    assert np.allclose(periodic.coords[0], [0, 0.5, 1.0, 1.5])
    assert np.allclose(bounded.coords[0], [0, 0.5, 1.0, 1.5, 2.0])
    assert periodic.spacing == bounded.spacing == (0.5,)
    assert periodic.lengths == bounded.lengths == (2.0,)
    grid = Grid.regular((3, 4, 5))
    assert grid.axes == ("z", "y", "x") and grid.shape == (3, 4, 5) and grid.size == 60
    assert grid.mesh().shape == (3, 3, 4, 5)


def test_from_xarray_reads_attrs_and_wrapping_longitude():
    lon = np.arange(0, 360, 2.5)
    lat = np.linspace(-88.75, 88.75, 72)
    da = xr.DataArray(
        np.zeros((72, 144)),
        dims=("lat", "lon"),
        coords={"lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon)},
    )
    grid = Grid.from_xarray(da)
    assert grid.axes == ("lat", "lon") and grid.periodic == (False, True)
    assert grid.units[0] == "degrees_north" and grid.lengths[1] == pytest.approx(360.0)
    regular = Grid.regular((8, 6), periodic=(True, False))
    ds = xr.Dataset(coords={k: v for k, v in regular.xarray_coords().items()})
    assert Grid.from_xarray(ds) == regular


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize(("n", "m"), [(16, 32), (32, 16), (15, 30), (16, 24)])
def test_resample_is_exact_on_representable_fields(periodic, n, m):
    source = Grid.regular((n, 8), periodic=(periodic, True))
    target = Grid.regular((m, 8), periodic=(periodic, True))
    y, x = source.mesh(torch.float64)
    ty, tx = target.mesh(torch.float64)
    if periodic:  # band-limited: frequencies below both Nyquists
        f = lambda y, x: torch.sin(2 * np.pi * 3 * y) + torch.cos(2 * np.pi * (y + 2 * x))  # noqa: E731
    else:  # linear along the bounded axis, band-limited along x
        f = lambda y, x: 2.0 * y - 1.0 + torch.cos(2 * np.pi * x) * (1 + y)  # noqa: E731
    assert torch.allclose(resample(f(y, x), source, target), f(ty, tx), atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 20), factor=st.integers(2, 3), seed=st.integers(0, 1000))
def test_periodic_upsample_then_downsample_is_identity(n, factor, seed):
    coarse = Grid.regular((n,), periodic=True)
    fine = coarse.with_shape(n * factor)
    x = torch.randn(3, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    up = resample(x, coarse, fine)
    assert torch.allclose(up[..., ::factor], x, atol=1e-10)  # interpolates the nodes
    assert torch.allclose(resample(up, fine, coarse), x, atol=1e-10)


def test_resample_errors():
    a = Grid.regular((8, 8), periodic=True)
    with pytest.raises(ValueError, match="does not end with the source grid's shape"):
        resample(torch.zeros(4, 4), a, a.with_shape(16))
    with pytest.raises(ValueError, match="different domains"):
        resample(torch.zeros(8, 8), a, Grid.regular((16, 16), lengths=2.0, periodic=True))
    with pytest.raises(ValueError, match="1-D field onto a 2-D grid"):
        resample(torch.zeros(8), Grid.regular(8), a)


def test_grid_errors():
    with pytest.raises(ValueError, match="strictly increasing"):
        Grid([[0.0, 1.0, 0.5]])
    with pytest.raises(ValueError, match="lengths must be positive"):
        Grid.regular(8, lengths=0.0)
    with pytest.raises(ValueError, match="not uniformly spaced"):
        Grid([[0.0, 1.0, 3.0]]).spacing  # noqa: B018
