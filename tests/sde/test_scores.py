"""Seasonal references and per-lead scores against hand-computed values."""

import numpy as np
import pytest
import xarray as xr

from sciml_diffusion.sde.scores import (
    anomaly_persistence,
    compare_forecasts,
    forecast_scores,
    phase_index,
    seasonal_climatology,
)


def record(values, start=0.0):
    values = np.asarray(values, dtype=float)
    times = start + np.arange(len(values), dtype=float)
    return xr.Dataset(
        {"state": (("time", "channel"), values[:, None])},
        coords={"time": times, "channel": ["x"]},
    )


def test_phase_index_and_bad_period():
    assert phase_index([0, 1, 11, 12, 25.0], 12, 1).tolist() == [0, 1, 11, 0, 1]
    with pytest.raises(ValueError, match="whole number"):
        phase_index([0.0], 12, 5)


def test_climatology_and_anomaly_persistence_by_hand():
    # 3 years of a period-4 cycle plus a year offset: phase means are cycle + 1
    cycle = np.array([0.0, 1.0, 2.0, 3.0])
    train = record(np.concatenate([cycle, cycle + 1, cycle + 2]))["state"]
    valid = xr.DataArray([[5.0, 6.0]], dims=("sample", "lead_time"))
    clim = seasonal_climatology(train, valid, period=4, step=1)
    assert clim.dims == ("member", "sample", "lead_time", "channel")
    assert clim.isel(sample=0, lead_time=0, channel=0).values.tolist() == [1.0, 2.0, 3.0]
    last = xr.DataArray([[10.0]], dims=("sample", "channel"))
    persistence = anomaly_persistence(
        train, last, xr.DataArray([4.0], dims="sample"), valid, period=4, step=1
    )
    # anomaly at phase 0: 10 - 1 = 9; phases 1 and 2 have means 2 and 3
    assert persistence.values[0, 0, :, 0].tolist() == [11.0, 12.0]


def test_scores_of_a_perfect_point_forecast_and_coverage():
    truth = xr.DataArray(np.zeros((2, 3, 1)), dims=("sample", "lead_time", "channel"))
    truth = truth.assign_coords(lead_time=[1.0, 2.0, 3.0])
    members = xr.concat([truth - 1, truth, truth + 1], "member").assign_coords(member=[0, 1, 2])
    scores = forecast_scores(members, truth)
    # fair CRPS of {-1, 0, 1} at 0: mean|x| - sum|xi - xj| / (2 M (M - 1)) = 2/3 - 8/12 = 0
    np.testing.assert_allclose(scores["crps"].values, 0.0, atol=1e-12)
    np.testing.assert_allclose(scores["coverage"].values, 1.0)
    outside = forecast_scores(members + 5, truth)
    np.testing.assert_allclose(outside["coverage"].values, 0.0)


def test_compare_forecasts_end_to_end():
    rng = np.random.default_rng(0)
    full = record(np.tile(np.arange(4.0), 10) + 0.1 * rng.standard_normal(40))
    train = full.isel(time=slice(0, 24))
    init = np.array([27.0, 30.0])
    lead = np.array([1.0, 2.0])
    valid = init[:, None] + lead[None, :]
    truth = full["state"].sel(time=valid.ravel()).values.reshape(2, 2, 1)
    members = truth[None] + rng.standard_normal((16, 2, 2, 1)) * 0.01
    forecast = xr.Dataset(
        {"state": (("member", "sample", "lead_time", "channel"), members)},
        coords={
            "lead_time": lead,
            "sample": [0, 1],
            "channel": ["x"],
            "valid_time": (("sample", "lead_time"), valid),
            "init_time": ("sample", init),
        },
        attrs={"method": "matching"},
    )
    scores = compare_forecasts(forecast, full, train, period=4)
    assert scores["method"].values.tolist() == ["matching", "climatology", "persistence"]
    crps = scores["crps"]
    # a dim named "method" is selected with a dict (sel's own keyword is also "method")
    assert (crps.sel({"method": "matching"}) < crps.sel({"method": "climatology"})).all()
    assert np.isnan(scores["coverage"].sel({"method": "persistence"})).all()


def test_fair_crps_is_unbiased_and_the_plain_one_is_not():
    """8 members of N(0, 1) against N(0, 1) outcomes: the expected CRPS of the forecast
    distribution is 1/sqrt(pi); the fair estimator is unbiased for it, the plain one
    (``qd``, which an earlier docstring called fair) is E|X - X'| / (2 M) too high."""
    from sciml_diffusion.metrics import crps_ensemble

    rng = np.random.default_rng(0)
    members, outcomes = rng.standard_normal((8, 40000)), rng.standard_normal(40000)
    fair = np.mean(crps_ensemble(members, outcomes, member_dim=0, fair=True))
    plain = np.mean(crps_ensemble(members, outcomes, member_dim=0, fair=False))
    exact = 1 / np.sqrt(np.pi)
    assert fair == pytest.approx(exact, abs=0.006)
    assert plain == pytest.approx(exact + (2 / np.sqrt(np.pi)) / 16, abs=0.006)
