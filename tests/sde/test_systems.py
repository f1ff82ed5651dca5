"""Simulated systems against known moments and solutions; the data-set layout on disk."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from sciml_diffusion.sde.series import series_from_dataset
from sciml_diffusion.sde.systems import (
    DoubleWell,
    OrnsteinUhlenbeck,
    StochasticLorenz,
    simulate,
    simulate_dataset,
)


def test_ou_stationary_variance_and_transition_mean():
    ou = OrnsteinUhlenbeck(theta=2.0, mu=0.5, sigma=0.8)
    n = 4000
    y0 = torch.full((n, 1), 2.0, dtype=torch.float64)
    ts = torch.tensor([0.0, 0.4, 4.0], dtype=torch.float64)
    path = simulate(ou, y0, ts, dt=1e-3, seed=7)
    # transition mean mu + (x0 - mu) e^{-theta t}, standard error ~ 0.3 / sqrt(n)
    mean_04 = 0.5 + 1.5 * math.exp(-0.8)
    assert abs(float(path[:, 1, 0].mean()) - mean_04) < 4 * 0.3 / math.sqrt(n)
    # after 8 relaxation times the law is stationary: variance sigma^2 / (2 theta)
    var = float(path[:, 2, 0].var())
    stationary = 0.8**2 / 4.0
    assert abs(var - stationary) < 4 * stationary * math.sqrt(2.0 / n)
    assert abs(ou.stationary_std**2 - stationary) < 1e-12


def test_lorenz_without_noise_follows_the_ode_with_first_order_error():
    lorenz = StochasticLorenz(b=(0.0, 0.0, 0.0))
    y0 = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    ts = torch.linspace(0, 0.5, 6, dtype=torch.float64)

    def rhs(t, y):
        return [10 * (y[1] - y[0]), 28 * y[0] - y[1] - y[0] * y[2], y[0] * y[1] - 8 / 3 * y[2]]

    ref = solve_ivp(rhs, (0, 0.5), [1.0, 1.0, 1.0], t_eval=ts.numpy(), rtol=1e-10, atol=1e-10)
    errors = [
        np.abs(simulate(lorenz, y0, ts, dt=dt)[0].numpy() - ref.y.T).max() for dt in (1e-3, 1e-4)
    ]
    assert errors[1] < 0.1  # on values of size ~10
    assert 5 < errors[0] / errors[1] < 20  # Euler: error proportional to dt


def test_lorenz_multiplicative_noise_scale():
    """Over a short step the increment's std is b * |y| sqrt(dt) around the drift."""
    lorenz = StochasticLorenz(b=(0.3, 0.1, 0.2))
    y0 = torch.tensor([[2.0, -3.0, 20.0]], dtype=torch.float64).expand(20000, 3).contiguous()
    path = simulate(lorenz, y0, torch.tensor([0.0, 1e-3], dtype=torch.float64), dt=1e-3)
    std = (path[:, 1] - path[:, 0]).std(0)
    expected = torch.tensor([0.3 * 2.0, 0.1 * 3.0, 0.2 * 20.0], dtype=torch.float64)
    torch.testing.assert_close(std, expected * math.sqrt(1e-3), rtol=0.05, atol=0.0)


def test_double_well_reaches_its_stationary_second_moment():
    """E[x^2] under p(x) ~ exp(-2 V(x) / sigma^2), V = x^4/4 - x^2/2, by quadrature."""
    sigma = 0.5
    dw = DoubleWell(sigma=sigma)
    n = 4000
    y0 = dw.initial_state(n, torch.Generator().manual_seed(0)).double()
    path = simulate(dw, y0, torch.tensor([0.0, 4.0], dtype=torch.float64), dt=2e-3, seed=3)
    x = path[:, -1, 0]
    grid = np.linspace(-3, 3, 20001)
    weight = np.exp(-2 * (grid**4 / 4 - grid**2 / 2) / sigma**2)
    second_moment = np.sum(grid**2 * weight) / np.sum(weight)
    standard_error = float((x**2).std()) / math.sqrt(n)
    assert abs(float((x**2).mean()) - second_moment) < 4 * standard_error + 2e-3
    assert abs(float(x.mean())) < 0.1


def test_dataset_layout_irregular_missing_and_round_trip(tmp_path):
    ds = simulate_dataset(
        OrnsteinUhlenbeck(), 6, 20, t_end=2.0, keep=0.6, missing=0.2, obs_noise=0.1, seed=1
    )
    assert ds["state"].dims == ("sample", "time", "channel")
    assert "obs_time" in ds and ds.sizes["time"] == 12
    assert np.isnan(ds["state"].values).any()
    assert json.loads(ds.attrs["system_parameters"])["theta"] == 2.0
    times = ds["obs_time"].values
    assert (times[:, 0] == 0).all()  # t = 0 is always kept and observed
    for row in times:  # slots with no observed value are written as padding (NaN time)
        assert (np.diff(row[np.isfinite(row)]) > 0).all()
    path = tmp_path / "ou.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    import xarray as xr

    back = series_from_dataset(xr.open_dataset(path, engine="h5netcdf"))
    series = series_from_dataset(ds)
    assert torch.equal(back.mask, series.mask)
    torch.testing.assert_close(back.values, series.values)
    torch.testing.assert_close(back.times, series.times)


def test_simulation_is_reproducible_by_seed():
    a = simulate_dataset(DoubleWell(), 3, 5, seed=4)["state"].values
    b = simulate_dataset(DoubleWell(), 3, 5, seed=4)["state"].values
    c = simulate_dataset(DoubleWell(), 3, 5, seed=5)["state"].values
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keep": 0.0}, "keep"),
        ({"missing": 1.0}, "missing"),
        ({"obs_noise": -1.0}, "obs_noise"),
    ],
)
def test_bad_simulation_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate_dataset(OrnsteinUhlenbeck(), 2, 5, **kwargs)
