"""Forecast scores per lead time against seasonal references computed from training data.

For a seasonal series with period ``P`` sampled every ``dt`` (``P / dt`` calendar phases,
e.g. 12 months), two references that know the training record but nothing else:

- **climatology per calendar phase**: at a valid time of phase ``k``, the ensemble of every
  training value of phase ``k`` (one member per training year; the same count for every
  phase, the first ``n`` of each);
- **persistence of the last anomaly**: ``c_k(valid) + (x(t_last) - c_k(t_last))`` with
  ``c_k`` the training mean of phase ``k``, a point forecast (CRPS = absolute error).

Scores per lead time (:func:`forecast_scores`): CRPS (the fair estimator, through
:func:`sciml_diffusion.metrics.ensemble_scores`), RMSE of the ensemble mean, spread-skill
ratio, and the coverage of the central ``level`` interval of the members (the fraction of
outcomes between the empirical ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles;
NaN for a one-member forecast).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sciml_diffusion.metrics import align_truth, ensemble_scores

__all__ = [
    "phase_index",
    "seasonal_climatology",
    "anomaly_persistence",
    "forecast_scores",
    "compare_forecasts",
]


def phase_index(times, period: float, step: float) -> np.ndarray:
    """Calendar phase ``round((t mod P) / dt) mod (P / dt)`` of numeric times (any shape)."""
    phases = int(round(period / step))
    if phases < 1 or abs(phases * step - period) > 1e-6 * period:
        raise ValueError(
            f"the period {period:g} must be a whole number of time steps {step:g}; give "
            "--period in the data's time units"
        )
    times = np.asarray(times, dtype=np.float64)
    return np.round(np.mod(times, period) / step).astype(int) % phases


def _phase_table(train: xr.DataArray, period: float, step: float) -> tuple[np.ndarray, int]:
    """Training values by phase: ``(phases, n, C)`` with ``n`` the smallest phase count."""
    values = train.transpose("time", "channel").values
    phase = phase_index(train["time"].values, period, step)
    phases = int(round(period / step))
    groups = [values[(phase == k) & ~np.isnan(values).any(-1)] for k in range(phases)]
    n = min(len(g) for g in groups)
    if n == 0:
        raise ValueError("the training record has a calendar phase with no value; give more data")
    return np.stack([g[:n] for g in groups]), n


def seasonal_climatology(
    train: xr.DataArray, valid_time: xr.DataArray, period: float, step: float
) -> xr.DataArray:
    """Climatology per calendar phase at ``valid_time`` (any dims): ``(member, *, channel)``.

    ``train``: the training record ``(time, channel)`` on numeric times.
    """
    table, n = _phase_table(train, period, step)
    phase = phase_index(valid_time.values, period, step)
    members = np.moveaxis(table[phase], -2, 0)  # (n, *valid, C)
    return xr.DataArray(
        members,
        dims=("member", *valid_time.dims, "channel"),
        coords={"member": np.arange(n), "channel": train["channel"].values},
    )


def anomaly_persistence(
    train: xr.DataArray,
    last_value: xr.DataArray,
    last_time: xr.DataArray,
    valid_time: xr.DataArray,
    period: float,
    step: float,
) -> xr.DataArray:
    """``c(valid) + x(last) - c(last)`` as a one-member ensemble ``(member, *, channel)``.

    ``last_value`` ``(sample, channel)`` at ``last_time`` ``(sample,)``; ``valid_time``
    ``(sample, lead_time)``.
    """
    table, _ = _phase_table(train, period, step)
    mean = table.mean(1)  # (phases, C)
    anomaly = last_value.values - mean[phase_index(last_time.values, period, step)]
    forecast = mean[phase_index(valid_time.values, period, step)] + anomaly[:, None, :]
    return xr.DataArray(
        forecast[None],
        dims=("member", *valid_time.dims, "channel"),
        coords={"member": [0], "channel": train["channel"].values},
    )


def forecast_scores(forecast: xr.DataArray, truth: xr.DataArray, level: float = 0.9) -> xr.Dataset:
    """Per-lead ``crps`` (fair), ``rmse``, ``ssr`` and ``coverage`` of ``forecast``.

    ``forecast`` ``(member, sample, lead_time, channel)``, ``truth`` the same without
    ``member``; means over samples and channels, NaN in the truth skipped.
    """
    scores = ensemble_scores(
        forecast.to_dataset(name="x"), truth.to_dataset(name="x"), weights=None, fair=True
    ).sel(variable="x", drop=True)
    out = scores[["crps", "rmse", "ssr"]]
    if forecast.sizes["member"] > 1:
        low = forecast.quantile((1 - level) / 2, dim="member").drop_vars("quantile")
        high = forecast.quantile((1 + level) / 2, dim="member").drop_vars("quantile")
        inside = ((truth >= low) & (truth <= high)).where(truth.notnull())
        out["coverage"] = inside.mean([d for d in inside.dims if d != "lead_time"])
    else:
        out["coverage"] = xr.full_like(out["crps"], np.nan)
    out["coverage"].attrs["level"] = level
    return out


def compare_forecasts(
    forecast: xr.Dataset,
    record: xr.Dataset,
    train: xr.Dataset,
    period: float,
    step: float | None = None,
    variable: str = "state",
    level: float = 0.9,
) -> xr.Dataset:
    """Scores of a forecast file and of the two seasonal references, ``(method, lead_time)``.

    Select a row with a dict, ``scores.sel({"method": "climatology"})`` (``sel``'s own
    keyword argument is also called ``method``).

    Parameters
    ----------
    forecast : xarray.Dataset
        ``variable(member, sample, lead_time, channel)`` with ``valid_time(sample,
        lead_time)`` and ``init_time(sample)`` (the output of ``sde forecast``).
    record : xarray.Dataset
        The truth, ``variable(time, channel)`` on numeric times covering the valid times
        and the initial times.
    train : xarray.Dataset
        The training record, the same layout; the references are computed from it only.
    period, step : float
        Seasonal period and sampling step in the data's time units (``step`` defaults to
        the median spacing of ``train``).
    """
    train_values = _record(train, variable)
    step = float(np.median(np.diff(train_values["time"].values))) if step is None else step
    members = forecast[variable].transpose("member", "sample", "lead_time", "channel")
    truth = align_truth(forecast[[variable]], record[[variable]])[variable]
    truth = truth.transpose("sample", "lead_time", "channel")
    truth = truth.assign_coords(lead_time=members["lead_time"], sample=members["sample"])
    valid = forecast["valid_time"]
    init = forecast["init_time"]
    last = _record(record, variable).sel(time=init.values, method="nearest")
    last = last.rename(time="sample").assign_coords(sample=forecast["sample"].values)
    methods = {
        str(forecast.attrs.get("method", "model")): members,
        "climatology": seasonal_climatology(train_values, valid, period, step),
        "persistence": anomaly_persistence(train_values, last, init, valid, period, step),
    }
    rows = [
        forecast_scores(m.assign_coords(lead_time=members["lead_time"]), truth, level)
        for m in methods.values()
    ]
    out = xr.concat(rows, dim=xr.DataArray(list(methods), dims="method", name="method"))
    out.attrs = {
        "crps": "fair",
        "period": period,
        "step": step,
        "references": "climatology per calendar phase and persistence of the last anomaly, "
        "from the training record",
        "members": int(members.sizes["member"]),
    }
    return out


def _record(ds: xr.Dataset, variable: str) -> xr.DataArray:
    data = ds[variable]
    if "channel" not in data.dims:
        data = data.expand_dims("channel", axis=-1)
    if "sample" in data.dims:
        if data.sizes["sample"] != 1:
            raise ValueError(
                f"a record holds one sequence; this one has {data.sizes['sample']} samples "
                "(import it with --window 0)"
            )
        data = data.isel(sample=0, drop=True)
    if set(data.dims) != {"time", "channel"}:
        raise ValueError(f"a record needs dims (time, channel), got {data.dims}")
    return data.transpose("time", "channel")
