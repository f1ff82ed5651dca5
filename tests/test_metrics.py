"""Ensemble scores against closed forms and known statistics."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from sciml_diffusion.metrics import (
    crps_ensemble,
    radial_power_spectrum,
    rank_histogram,
    relative_l2,
    spread_skill,
)


def gaussian_crps(mu, sigma, y):
    z = (y - mu) / sigma
    phi, cdf = stats.norm.pdf(z), stats.norm.cdf(z)
    return sigma * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))


@pytest.mark.parametrize("fair", [True, False])
def test_crps_of_a_large_gaussian_ensemble_matches_the_closed_form(fair):
    rng = np.random.default_rng(0)
    y = np.array([-1.0, 0.3, 2.5])
    members = 0.5 + 2.0 * rng.standard_normal((20000, 3))
    got = crps_ensemble(members, y, member_dim=0, fair=fair)
    assert np.allclose(got, gaussian_crps(0.5, 2.0, y), rtol=0.02)


def test_calibrated_ensemble_has_unit_spread_skill_and_flat_ranks():
    rng = np.random.default_rng(1)
    members, truth = rng.standard_normal((9, 40000)), rng.standard_normal(40000)
    assert spread_skill(members, truth)["ratio"] == pytest.approx(1.0, abs=0.03)
    counts = rank_histogram(members, truth)
    assert counts.shape == (10,) and stats.chisquare(counts).pvalue > 1e-3
    under = spread_skill(0.3 * members, truth)["ratio"]
    assert under < 0.5


def test_radial_spectrum_places_a_mode_in_its_shell_and_white_noise_flat():
    n = 32
    y, x = np.meshgrid(np.arange(n) / n, np.arange(n) / n, indexing="ij")
    field = torch.tensor(np.cos(2 * np.pi * (3 * x + 4 * y)))
    k, power = radial_power_spectrum(field)
    assert k[np.argmax(power)] == 5
    noise = torch.randn(400, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _, p = radial_power_spectrum(noise)
    assert np.allclose(p, 1.0, atol=0.15)  # white noise: flat at unit power


def test_relative_l2_and_shape_errors():
    target = torch.ones(2, 4, 4)
    assert torch.allclose(relative_l2(1.1 * target, target, ndim=2), torch.full((2,), 0.1))
    with pytest.raises(ValueError, match="does not match observation"):
        crps_ensemble(np.zeros((5, 3)), np.zeros(4))


# ---------------------------------------------------------------------- xarray inputs
import xarray as xr  # noqa: E402

from sciml_diffusion.metrics import (  # noqa: E402
    align_truth,
    area_weights,
    ensemble_scores,
    weighted_mean,
)


def _ensemble(rng, members, leads, shape, scale):
    """Truth and ensemble drawn from the same N(0, scale^2) at every lead time."""
    dims = ("member", "lead_time", "y", "x")
    coords = {"lead_time": np.arange(1, leads + 1)}
    truth = xr.DataArray(
        rng.standard_normal((leads, *shape)) * scale[:, None, None], dims=dims[1:], coords=coords
    )
    ens = xr.DataArray(
        rng.standard_normal((members, leads, *shape)) * scale[None, :, None, None],
        dims=dims,
        coords=coords,
    )
    return ens, truth


@pytest.mark.parametrize("fair", [True, False])
def test_xarray_crps_of_a_large_gaussian_ensemble_matches_the_closed_form(fair):
    rng = np.random.default_rng(2)
    y = xr.DataArray([-1.0, 0.3, 2.5], dims="x")
    members = xr.DataArray(0.5 + 2.0 * rng.standard_normal((20000, 3)), dims=("member", "x"))
    got = crps_ensemble(members, y, fair=fair)
    assert got.dims == ("x",)
    assert np.allclose(got.values, gaussian_crps(0.5, 2.0, y.values), rtol=0.02)


def test_ensemble_scores_per_lead_time_are_calibrated_for_the_truths_own_distribution():
    rng = np.random.default_rng(3)
    scale = np.array([0.5, 1.0, 2.0])  # spread grows with lead time, as in a forecast
    ens, truth = _ensemble(rng, members=10, leads=3, shape=(40, 50), scale=scale)
    scores = ensemble_scores(xr.Dataset({"u": ens}), xr.Dataset({"u": truth}), weights=None)
    row = scores.sel(variable="u")
    assert row["ssr"].dims == ("lead_time",)
    assert np.allclose(row["ssr"].values, 1.0, atol=0.05)
    # E|X - y| - E|X - X'|/2 for independent X, y ~ N(0, s^2): 2s/sqrt(pi) - s/sqrt(pi)
    expected = scale / np.sqrt(np.pi)
    assert np.allclose(row["crps"].values, expected, rtol=0.03)
    # ensemble-mean MSE: s^2 (1 + 1/M)
    assert np.allclose(row["mse"].values, scale**2 * 1.1, rtol=0.05)
    over = ensemble_scores(xr.Dataset({"u": 3 * ens}), xr.Dataset({"u": truth}), weights=None)
    assert np.all(over.sel(variable="u")["ssr"].values > 2)


def test_spread_skill_on_xarray_keeps_lead_time():
    rng = np.random.default_rng(4)
    ens, truth = _ensemble(rng, members=8, leads=2, shape=(60, 60), scale=np.array([1.0, 3.0]))
    out = spread_skill(ens, truth, member_dim="member")
    assert out["ratio"].dims == ("lead_time",)
    assert np.allclose(out["ratio"].values, 1.0, atol=0.05)
    assert np.allclose(
        out["skill"].values, [1.0 * np.sqrt(9 / 8), 3.0 * np.sqrt(9 / 8)], rtol=0.05
    )


def test_area_weights_are_cos_latitude_and_skip_nan_land():
    lat = np.array([60.0, 0.0, -60.0])  # north to south
    da = xr.DataArray(
        [[1.0, np.nan], [2.0, 2.0], [3.0, 3.0]],
        dims=("lat", "lon"),
        coords={"lat": lat, "lon": [0.0, 180.0]},
    )
    w = area_weights(da)
    assert np.allclose(w.values / w.values[1], [0.5, 1.0, 0.5])
    got = float(weighted_mean(da, ["lat", "lon"], w))
    expected = (0.5 * 1 + 2 * 1 * 2 + 0.5 * 3 * 2) / (0.5 + 2 + 1.0)
    assert got == pytest.approx(expected)
    assert area_weights(xr.DataArray(np.zeros((2, 2)), dims=("y", "x"))) is None


def test_truth_as_a_time_series_is_aligned_by_valid_time():
    times = np.arange(10) * 0.25
    truth = xr.Dataset({"u": (("time", "x"), np.arange(20.0).reshape(10, 2))}, {"time": times})
    fc = xr.Dataset(
        {"u": (("member", "lead_time", "x"), np.zeros((2, 3, 2)))},
        coords={
            "lead_time": [1, 2, 4],
            "valid_time": ("lead_time", 0.5 + 0.25 * np.array([1, 2, 4]) + 1e-12),
        },
    )
    aligned = align_truth(fc, truth)
    assert aligned["u"].dims == ("lead_time", "x")
    np.testing.assert_array_equal(aligned["u"].values[:, 0], [6.0, 8.0, 12.0])
    late = fc.assign_coords(valid_time=("lead_time", [2.0, 2.25, 9.0]))
    with pytest.raises(ValueError, match="no data at valid times"):
        align_truth(late, truth)
    with pytest.raises(ValueError, match="needs a 'lead_time' dim or a 'time' dim"):
        align_truth(fc, truth.isel(time=0))
