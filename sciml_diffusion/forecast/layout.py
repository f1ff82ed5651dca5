"""Keeping a user's data intact on the way through a forecaster.

Reanalysis-style files store latitude north to south, longitudes on 0..360, times in a
non-standard calendar. Models work on ascending coordinates (a :class:`Grid` is
increasing); :func:`ascending` reverses decreasing spatial axes and :func:`restore`
reverses them back, so every output lies on the input's own coordinates, in its order.
Time steps are measured in the data's own units (:func:`time_step`) and valid times are
``init_time + lead * step`` (:func:`valid_times`) for ``datetime64``, ``cftime`` and
plain numbers alike.
"""

from __future__ import annotations

import datetime

import numpy as np
import xarray as xr

from sciml_diffusion.fields.dataset import spatial_dims

__all__ = ["ascending", "restore", "time_step", "valid_times"]


def ascending(ds: xr.Dataset) -> tuple[xr.Dataset, tuple[str, ...]]:
    """``ds`` with every decreasing spatial coordinate reversed, and the reversed dims."""
    flipped = []
    for dim in spatial_dims(ds):
        if dim not in ds.coords or ds.sizes[dim] < 2:
            continue
        values = np.asarray(ds[dim].values, dtype=np.float64)
        if np.all(np.diff(values) < 0):
            flipped.append(dim)
    if flipped:
        ds = ds.isel({d: slice(None, None, -1) for d in flipped})
        ds = ds.assign_coords(
            {d: (d, np.ascontiguousarray(ds[d].values), ds[d].attrs) for d in flipped}
        )
    return ds, tuple(flipped)


def restore(ds: xr.Dataset, flipped: tuple[str, ...]) -> xr.Dataset:
    """Undo :func:`ascending`: reverse the dims ``flipped`` back to the input's order."""
    flipped = [d for d in flipped if d in ds.dims]
    return ds.isel({d: slice(None, None, -1) for d in flipped}) if flipped else ds


def time_step(times) -> dict:
    """The (median) spacing of a time coordinate: ``{"kind": ..., "value": ...}``.

    ``kind`` is ``"datetime"`` (``datetime64``; value in seconds), ``"cftime"`` (calendar
    objects; value in seconds) or ``"numeric"`` (value in the coordinate's units).
    """
    times = np.asarray(times)
    if times.size < 2:
        raise ValueError("a time step needs at least two times")
    if np.issubdtype(times.dtype, np.datetime64):
        seconds = np.diff(times).astype("timedelta64[ns]").astype(np.float64) / 1e9
        return {"kind": "datetime", "value": float(np.median(seconds))}
    if times.dtype == object:
        seconds = [(b - a).total_seconds() for a, b in zip(times[:-1], times[1:])]
        return {"kind": "cftime", "value": float(np.median(seconds))}
    return {"kind": "numeric", "value": float(np.median(np.diff(times.astype(np.float64))))}


def valid_times(init_time, leads, step: dict) -> np.ndarray:
    """``init_time + lead * step`` for every lead (integer numbers of steps)."""
    leads = np.asarray(leads)
    kind, value = step["kind"], float(step["value"])
    if kind == "datetime":
        delta = np.asarray(np.rint(leads * value * 1e9), dtype="int64").astype("timedelta64[ns]")
        return np.datetime64(init_time, "ns") + delta
    if kind == "cftime":
        return np.array(
            [init_time + datetime.timedelta(seconds=float(k) * value) for k in leads], object
        )
    return float(init_time) + leads * value
