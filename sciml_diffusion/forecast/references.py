"""Trivial reference forecasts, scored the same way as the models.

- :func:`persistence`: the last initial frame at every lead time, one member (its CRPS is
  the mean absolute error).
- :func:`climatology`: an ensemble of ``members`` frames drawn at random from the training
  data, the same at every lead time: the forecast of someone who knows the statistics of
  the system but not its state.

A skilful forecaster beats persistence at short leads and climatology at every lead; a
forecaster that does not is reported as such.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sciml_diffusion.fields import FieldDataset
from sciml_diffusion.forecast.base import _as_xarray, as_field_dataset
from sciml_diffusion.forecast.layout import ascending, restore, time_step, valid_times

__all__ = ["persistence", "climatology"]


def persistence(initial, lead_times, variables=None, step: dict | None = None) -> xr.Dataset:
    """The last frame of ``initial`` repeated at every lead time, ``member`` of size 1.

    ``step`` (:func:`~sciml_diffusion.forecast.layout.time_step` of the training data) dates
    the lead times when ``initial`` has a single time step.
    """
    ds, flipped = ascending(_as_xarray(initial))
    data = FieldDataset(ds, variables=variables)
    last = ds.isel(time=-1)
    leads = _leads(lead_times)
    values = {}
    for v in data.variables:
        expanded = last[v].expand_dims(member=1, lead_time=leads.size)
        values[v] = expanded.transpose(*_order(expanded.dims))
    return restore(_assemble(values, ds, leads, "persistence", step), flipped)


def climatology(train, initial, lead_times, members: int, seed: int = 0, variables=None):
    """``members`` training frames drawn at random (per initial state), at every lead time."""
    train = as_field_dataset(train, variables)
    ds, flipped = ascending(_as_xarray(initial))
    data = FieldDataset(ds, variables=variables or list(train.variables))
    frames = train.xarray
    stacked = [d for d in ("sample", "time") if d in frames.dims]
    pool = frames.stack(frame=stacked) if stacked else frames.expand_dims(frame=1)
    count = pool.sizes["frame"]
    n_init = ds.sizes.get("sample", 1)
    rng = np.random.default_rng(seed)
    picks = rng.integers(count, size=(n_init, members))
    leads = _leads(lead_times)
    values = {}
    for v in data.variables:
        chosen = pool[v].isel(frame=xr.DataArray(picks, dims=("sample", "member")))
        chosen = chosen.drop_vars(
            [c for c in chosen.coords if c not in chosen.dims or c in ("frame", "sample", "time")],
            errors="ignore",
        )
        if "sample" not in ds.dims:
            chosen = chosen.isel(sample=0, drop=True)
        chosen = chosen.expand_dims(lead_time=leads.size)
        values[v] = chosen.transpose(*_order(chosen.dims))
        values[v] = values[v].assign_coords(
            {d: ds[d] for d in data.spatial_dims if d in ds.coords}
        )
    step = (
        time_step(train.xarray["time"].values) if train.xarray.sizes.get("time", 0) > 1 else None
    )
    return restore(_assemble(values, ds, leads, "climatology", step), flipped)


def _leads(lead_times) -> np.ndarray:
    leads = np.unique(np.atleast_1d(np.asarray(lead_times, dtype=np.int64)))
    if leads.size == 0 or leads.min() < 1:
        raise ValueError(f"lead times must be integers >= 1, got {lead_times}")
    return leads


def _order(dims) -> list[str]:
    head = [d for d in ("sample", "member", "lead_time") if d in dims]
    return head + [d for d in dims if d not in head]


def _assemble(values: dict, ds: xr.Dataset, leads, method: str, step=None) -> xr.Dataset:
    out = xr.Dataset({v: a.drop_vars("time", errors="ignore") for v, a in values.items()})
    out = out.assign_coords(
        member=np.arange(out.sizes["member"]),
        lead_time=("lead_time", leads, {"long_name": "lead time", "units": "steps"}),
    )
    if "time" in ds.coords and ds.sizes["time"] > 1:
        step = time_step(ds["time"].values)
    if "time" in ds.coords and step is not None:
        init = ds["time"].values[-1]
        out = out.assign_coords(
            init_time=((), init), valid_time=("lead_time", valid_times(init, leads, step))
        )
    if "sample" in ds.coords and "sample" in out.dims:
        out = out.assign_coords(sample=ds["sample"].values)
    for v in values:
        out[v].attrs = dict(ds[v].attrs)
    out.attrs = {"source": f"sciml_diffusion {method} forecast", "method": method}
    return out
