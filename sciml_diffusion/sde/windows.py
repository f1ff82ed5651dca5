"""Long records cut into windows, and calendar times turned into numbers.

A user's series is usually one long record (a monthly climate index over 60 years) while a
latent SDE trains on many short sequences. :func:`cut_windows` cuts a record of ``N``
times into windows of ``W`` consecutive records every ``S`` records, each keeping its own
absolute times (so a seasonal model sees each window's calendar phase).

Calendar dates become numbers in a documented unit (:func:`calendar_to_number`):

- ``days``: days since the reference (fractions for times of day);
- ``months``: ``12 (year - year0) + (month - month0) + (day - 1) / days_in_month``, so the
  first of each month is a whole number and ``t mod 12`` is the month of the year when the
  reference is a 1 January (the default);
- ``years``: ``year - year0 + (day_of_year - 1) / days_in_year``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from sciml_diffusion.sde.series import ObservedSeries, series_to_dataset

__all__ = [
    "TIME_UNITS",
    "calendar_to_number",
    "cut_windows",
    "record_dataset",
    "windows_dataset",
]

#: units calendar times can be converted to
TIME_UNITS = ("days", "months", "years")


def calendar_to_number(
    dates, unit: str = "days", reference: str | None = None
) -> tuple[np.ndarray, str]:
    """Dates ``(N,)`` (strings, ``datetime64`` or cftime objects) as numbers in ``unit``.

    ``reference`` defaults to 1 January of the first date's year. Returns the numbers and
    their CF-style description, e.g. ``"months since 1950-01-01"``.
    """
    if unit not in TIME_UNITS:
        raise ValueError(f"time unit must be one of {TIME_UNITS}, got {unit!r}")
    year, month, day, day_of_year, month_days, year_days, seconds = _fields(dates)
    if reference is None:
        ref = (int(year.min()), 1, 1)
    else:
        stamp = pd.Timestamp(reference)
        ref = (stamp.year, stamp.month, stamp.day)
    fraction = seconds / 86400.0
    if unit == "months":
        t = 12 * (year - ref[0]) + (month - ref[1]) + (day - 1 + fraction) / month_days
        t = t - (ref[2] - 1) / 31.0
    elif unit == "years":
        t = (year - ref[0]) + (day_of_year - 1 + fraction) / year_days
        start = pd.Timestamp(year=ref[0], month=ref[1], day=ref[2])
        t = t - (start.day_of_year - 1) / (366.0 if start.is_leap_year else 365.0)
    else:
        t = _days_since(dates, ref)
    return np.asarray(t, dtype=np.float64), f"{unit} since {ref[0]:04d}-{ref[1]:02d}-{ref[2]:02d}"


def _fields(dates):
    """Calendar fields of ``dates``, for the standard or any cftime calendar."""
    values = np.asarray(dates)
    if values.dtype.kind == "O" and len(values) and hasattr(values.flat[0], "calendar"):
        import cftime

        year = np.array([d.year for d in values])
        month = np.array([d.month for d in values])
        day = np.array([d.day for d in values])
        day_of_year = np.array([d.dayofyr for d in values])
        calendar = values.flat[0].calendar
        month_days = np.array(
            [_cf_days(cftime, calendar, y, m) for y, m in zip(year, month)], dtype=float
        )
        year_days = np.array(
            [sum(_cf_days(cftime, calendar, y, m) for m in range(1, 13)) for y in year],
            dtype=float,
        )
        seconds = np.array([d.hour * 3600 + d.minute * 60 + d.second for d in values], float)
        return year, month, day, day_of_year, month_days, year_days, seconds
    index = pd.DatetimeIndex(pd.to_datetime(values))
    seconds = (index - index.normalize()).total_seconds().to_numpy()
    year_days = np.where(index.is_leap_year, 366.0, 365.0)
    return (
        index.year.to_numpy(),
        index.month.to_numpy(),
        index.day.to_numpy(),
        index.day_of_year.to_numpy(),
        index.days_in_month.to_numpy().astype(float),
        year_days,
        seconds,
    )


def _cf_days(cftime, calendar, year, month) -> int:
    start = cftime.datetime(year, month, 1, calendar=calendar)
    nxt = cftime.datetime(year + month // 12, month % 12 + 1, 1, calendar=calendar)
    return (nxt - start).days


def _days_since(dates, ref) -> np.ndarray:
    values = np.asarray(dates)
    if values.dtype.kind == "O" and len(values) and hasattr(values.flat[0], "calendar"):
        import cftime

        origin = cftime.datetime(*ref, calendar=values.flat[0].calendar)
        return np.array([(d - origin).total_seconds() / 86400.0 for d in values])
    index = pd.DatetimeIndex(pd.to_datetime(values))
    return (index - pd.Timestamp(*ref)).total_seconds().to_numpy() / 86400.0


def cut_windows(times, values, window: int, stride: int = 1) -> ObservedSeries:
    """Windows of ``window`` consecutive records every ``stride`` records.

    Parameters
    ----------
    times : ``(N,)`` increasing numbers
    values : ``(N, C)``, NaN where missing
    window, stride : int
        Records per window and between window starts.

    Returns
    -------
    ObservedSeries ``(B, window, C)`` with ``B = 1 + (N - window) // stride``, each window
    on its own absolute times.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    if window < 2 or stride < 1:
        raise ValueError(f"window must be >= 2 and stride >= 1, got {window} and {stride}")
    if len(times) < window:
        raise ValueError(
            f"the record has {len(times)} times, fewer than one window of {window}; "
            "choose a smaller --window"
        )
    starts = np.arange(0, len(times) - window + 1, stride)
    index = starts[:, None] + np.arange(window)[None, :]
    keep = ~np.isnan(values[index]).all((1, 2))
    if not keep.any():
        raise ValueError("every window is empty (all values NaN)")
    return ObservedSeries.from_tensors(times[index][keep], values[index][keep])


def record_dataset(
    times, values, channels, time_units: str, variable: str = "state", attrs=None
) -> xr.Dataset:
    """A whole record as ``state(time, channel)`` on a numeric ``time`` coordinate."""
    values = np.asarray(values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    ds = xr.Dataset(
        {variable: (("time", "channel"), values)},
        coords={"time": np.asarray(times, dtype=np.float64), "channel": list(channels)},
        attrs=dict(attrs or {}),
    )
    ds["time"].attrs["time_units"] = time_units
    ds[variable].attrs["missing"] = "NaN marks a value that was not observed"
    return ds


def windows_dataset(series, channels, time_units: str, variable="state", attrs=None):
    """:func:`~sciml_diffusion.sde.series.series_to_dataset` with the time unit recorded."""
    ds = series_to_dataset(series, channels, variable, attrs)
    name = "obs_time" if "obs_time" in ds else "time"
    ds[name].attrs["time_units"] = time_units
    ds.attrs["time_units"] = time_units
    return ds
