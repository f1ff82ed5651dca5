"""Observed time series: irregular times, missing values, and their xarray layout.

A batch of ``B`` sequences with at most ``T`` observation slots and ``C`` channels is

- ``times``  ``(B, T)``: observation times, strictly increasing over the observed slots;
- ``values`` ``(B, T, C)``: observations, ``0`` where missing (never NaN on the torch side);
- ``mask``   ``(B, T, C)``: ``True`` where a value was observed.

A slot with no observed channel is padding: it is ignored by every model and loss, so
sequences of different lengths and irregular time points share one rectangular tensor.

On disk (through the data layer) a data set holds one variable ``state(sample, time,
channel)``. NaN marks a missing value. Regular sequences put their times in the ``time``
coordinate; irregular ones add a variable ``obs_time(sample, time)`` with each sequence's
own times (NaN for padding slots), and then ``time`` is only the slot index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

__all__ = ["ObservedSeries", "ChannelNormalizer", "series_from_dataset", "series_to_dataset"]


@dataclass(frozen=True)
class ObservedSeries:
    """A batch of observed sequences on the torch side.

    Parameters
    ----------
    times : Tensor ``(B, T)``
        Observation times; strictly increasing over each sequence's observed slots.
    values : Tensor ``(B, T, C)``
        Observed values, zero where ``mask`` is ``False``.
    mask : Tensor ``(B, T, C)``, bool
        Which values were observed.
    """

    times: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def from_tensors(
        cls,
        times: torch.Tensor | np.ndarray,
        values: torch.Tensor | np.ndarray,
        mask: torch.Tensor | np.ndarray | None = None,
    ) -> ObservedSeries:
        """Validate and build from rectangular arrays.

        ``times`` is ``(T,)`` (shared) or ``(B, T)``; ``values`` is ``(B, T, C)`` with NaN for
        missing values (NaN is always treated as missing). A slot whose time is NaN must
        have no observed value (it is padding).
        """
        values = _as_float_tensor(values, "values")
        if values.ndim != 3:
            raise ValueError(
                f"values must have shape (sample, time, channel), got {tuple(values.shape)}; "
                "add a channel axis of size 1 for a scalar series"
            )
        times = _as_float_tensor(times, "times", dtype=values.dtype).to(values.device)
        if times.ndim == 1:
            times = times.expand(values.shape[0], -1)
        if times.shape != values.shape[:2]:
            raise ValueError(
                f"times has shape {tuple(times.shape)} but values has {tuple(values.shape)}; "
                "times must be (time,) or (sample, time) matching values' first two axes"
            )
        observed = ~torch.isnan(values)
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.bool, device=values.device)
            if mask.shape != values.shape:
                raise ValueError(
                    f"mask has shape {tuple(mask.shape)}, values {tuple(values.shape)}; "
                    "they must match"
                )
            observed = observed & mask
        padding = torch.isnan(times)
        _check_padding(padding, observed)
        times = _fill_padding_times(times, padding)
        _check_times(times, observed.any(-1))
        return cls(times, torch.where(observed, values, torch.zeros_like(values)), observed)

    @classmethod
    def from_sequences(
        cls, sequences: Sequence[tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]]
    ) -> ObservedSeries:
        """Pad sequences of different lengths, each a ``(times (T_i,), values (T_i, C))`` pair."""
        if len(sequences) == 0:
            raise ValueError("no sequences given; pass at least one (times, values) pair")
        length = max(len(t) for t, _ in sequences)
        channels = {np.shape(v)[-1] for _, v in sequences}
        if len(channels) != 1:
            raise ValueError(f"sequences have different channel counts {sorted(channels)}")
        (c,) = channels
        times = np.full((len(sequences), length), np.nan)
        values = np.full((len(sequences), length, c), np.nan)
        for i, (t, v) in enumerate(sequences):
            t, v = np.asarray(t, dtype=float), np.asarray(v, dtype=float)
            if v.shape != (len(t), c):
                raise ValueError(
                    f"sequence {i}: {len(t)} times but values of shape {v.shape}; "
                    f"expected ({len(t)}, {c})"
                )
            times[i, : len(t)], values[i, : len(t)] = t, v
        dtype = torch.get_default_dtype()
        return cls.from_tensors(
            torch.as_tensor(times, dtype=dtype), torch.as_tensor(values, dtype=dtype)
        )

    @property
    def observed(self) -> torch.Tensor:
        """``(B, T)`` bool: slots with at least one observed channel."""
        return self.mask.any(-1)

    @property
    def start(self) -> torch.Tensor:
        """``(B,)``: time of each sequence's first observed slot."""
        inf = torch.full_like(self.times, torch.inf)
        return torch.where(self.observed, self.times, inf).amin(-1)

    @property
    def end(self) -> torch.Tensor:
        """``(B,)``: time of each sequence's last observed slot."""
        ninf = torch.full_like(self.times, -torch.inf)
        return torch.where(self.observed, self.times, ninf).amax(-1)

    @property
    def num_observed(self) -> torch.Tensor:
        """``(B,)``: number of observed values (scalars) per sequence."""
        return self.mask.sum((-2, -1))

    def __len__(self) -> int:
        return self.times.shape[0]

    def __getitem__(self, index) -> ObservedSeries:
        """Select sequences (first axis) by an int, slice, or index tensor."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return ObservedSeries(self.times[index], self.values[index], self.mask[index])

    def to(self, device: torch.device | str) -> ObservedSeries:
        return ObservedSeries(self.times.to(device), self.values.to(device), self.mask.to(device))

    def time_window(self, start: float, end: float) -> ObservedSeries:
        """The same sequences with only the slots in ``[start, end]`` (others masked)."""
        inside = (self.times >= start) & (self.times <= end)
        mask = self.mask & inside[..., None]
        return ObservedSeries(self.times, torch.where(mask, self.values, 0.0), mask)

    def hide_random(
        self, fraction: float, generator: torch.Generator | None = None
    ) -> ObservedSeries:
        """Hide each observed slot with probability ``fraction``, keeping every sequence's
        first and last observed slot (so ``start`` and ``end`` do not change).

        ``generator``: one generator, or a list of one per sequence (sequence ``b``'s slots
        drawn from ``generator[b]``, whatever batch it is in).
        """
        if not 0 <= fraction < 1:
            raise ValueError(f"fraction must be in [0, 1), got {fraction}")
        observed = self.observed
        if isinstance(generator, (list, tuple)):
            draws = [torch.rand(observed.shape[1:], generator=g) for g in generator]
            uniform = torch.stack(draws)
        else:
            uniform = torch.rand(observed.shape, generator=generator)
        keep = uniform.to(observed.device) >= fraction
        slot = torch.arange(observed.shape[1], device=observed.device).expand_as(observed)
        first = torch.where(observed, slot, observed.shape[1]).amin(-1, keepdim=True)
        last = torch.where(observed, slot, -1).amax(-1, keepdim=True)
        keep = keep | (slot == first) | (slot == last)
        return self.split_mask(keep)[0]

    def split_mask(self, keep: torch.Tensor) -> tuple[ObservedSeries, ObservedSeries]:
        """Split slots by a ``(B, T)`` bool tensor into (kept, held out) series."""
        kept = self.mask & keep[..., None]
        held = self.mask & ~keep[..., None]
        return (
            ObservedSeries(self.times, torch.where(kept, self.values, 0.0), kept),
            ObservedSeries(self.times, torch.where(held, self.values, 0.0), held),
        )


@dataclass(frozen=True)
class ChannelNormalizer:
    """Per-channel affine standardisation ``x_norm = (x - mean) / std``.

    Parameters
    ----------
    mean, std : Tensor ``(C,)``
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, series: ObservedSeries) -> ChannelNormalizer:
        """Mean and standard deviation of the observed values, channel by channel."""
        count = series.mask.sum((0, 1)).clamp_min(1)
        mean = (series.values * series.mask).sum((0, 1)) / count
        var = (((series.values - mean) * series.mask) ** 2).sum((0, 1)) / count
        return cls(mean, var.sqrt().clamp_min(1e-8))

    def normalize(self, series: ObservedSeries) -> ObservedSeries:
        mean, std = self.mean.to(series.values), self.std.to(series.values)
        values = torch.where(series.mask, (series.values - mean) / std, 0.0)
        return ObservedSeries(series.times, values, series.mask)

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        """``(..., C)`` normalised values back to data units."""
        return values * self.std.to(values) + self.mean.to(values)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ChannelNormalizer:
        return cls(torch.tensor(d["mean"]), torch.tensor(d["std"]))


def series_from_dataset(dataset, variable: str = "state") -> ObservedSeries:
    """Read an :class:`ObservedSeries` from a data set in the layout of this module.

    ``dataset`` is an ``xarray.Dataset`` or anything with an ``.xarray`` attribute (a
    ``FieldDataset``). A variable without a ``channel`` dim is read as one channel, one
    without a ``sample`` dim as a single record.
    """
    ds = getattr(dataset, "xarray", dataset)
    if variable not in ds.data_vars:
        raise KeyError(
            f"variable {variable!r} not in the data set (it has {sorted(ds.data_vars)}); "
            "pass the name of the time-series variable"
        )
    data = ds[variable]
    if "channel" not in data.dims:
        data = data.expand_dims("channel", axis=-1)
    if "sample" not in data.dims and "time" in data.dims:
        data = data.expand_dims("sample")  # one whole record
    missing = {"sample", "time"} - set(data.dims)
    if missing:
        raise ValueError(
            f"variable {variable!r} has dims {data.dims}; a time series needs "
            "(sample, time[, channel])"
        )
    values = data.transpose("sample", "time", "channel").values
    if "obs_time" in ds.data_vars:
        times = ds["obs_time"].transpose("sample", "time").values
    elif "time" in ds.coords:
        times = np.broadcast_to(ds["time"].values.astype(float), values.shape[:2])
    else:
        raise ValueError(
            "the data set has neither an obs_time variable nor a time coordinate; "
            "add the observation times"
        )
    return ObservedSeries.from_tensors(
        torch.as_tensor(np.array(times, dtype=np.float32)),
        torch.as_tensor(np.array(values, dtype=np.float32)),
    )


def series_to_dataset(
    series: ObservedSeries,
    channels: Sequence[str] | None = None,
    variable: str = "state",
    attrs: dict | None = None,
) -> xr.Dataset:
    """Write ``series`` in the layout of this module (NaN for missing values)."""
    values = torch.where(series.mask, series.values, torch.nan).cpu().numpy()
    b, t, c = values.shape
    channels = list(channels) if channels is not None else [f"c{i}" for i in range(c)]
    times = series.times.cpu().numpy()
    regular = bool(np.all(times == times[:1])) and bool(series.observed.all())
    coords = {"sample": np.arange(b), "channel": channels}
    data_vars = {variable: (("sample", "time", "channel"), values)}
    if regular:
        coords["time"] = times[0]
    else:
        coords["time"] = np.arange(t)
        padded = ~series.observed.cpu().numpy()
        data_vars["obs_time"] = (("sample", "time"), np.where(padded, np.nan, times))
    ds = xr.Dataset(data_vars, coords=coords, attrs=dict(attrs or {}))
    ds[variable].attrs["missing"] = "NaN marks a value that was not observed"
    if not regular:
        ds["obs_time"].attrs["description"] = "observation time of each slot; NaN = padding"
    return ds


def _as_float_tensor(x, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(x, (list, tuple)) and len({np.shape(item) for item in x}) > 1:
        lengths = [np.shape(item)[0] if np.ndim(item) else 1 for item in x]
        raise ValueError(
            f"{name}: sequences have different lengths {lengths} and no mask; pad them "
            "with NaN (missing) to a common length or use ObservedSeries.from_sequences"
        )
    tensor = torch.as_tensor(np.asarray(x) if isinstance(x, (list, tuple)) else x)
    if not torch.is_floating_point(tensor):
        tensor = tensor.to(torch.get_default_dtype())
    return tensor.to(dtype) if dtype is not None else tensor


def _check_padding(padding: torch.Tensor, observed: torch.Tensor) -> None:
    bad = padding & observed.any(-1)
    if bad.any():
        b, t = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"sample {b}, slot {t} has observed values but a NaN time; give every observed "
            "value a time (NaN times are only for padding slots)"
        )


def _fill_padding_times(times: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Replace NaN (padding) times by the sequence's first valid time; they are masked."""
    if not padding.any():
        return times
    first = torch.where(padding, torch.inf, times).amin(-1, keepdim=True)
    first = torch.where(torch.isinf(first), 0.0, first)
    return torch.where(padding, first.expand_as(times), times)


def _check_times(times: torch.Tensor, observed: torch.Tensor) -> None:
    if not torch.isfinite(times).all():
        raise ValueError("times contain inf; give finite observation times")
    counts = observed.sum(-1)
    if (counts == 0).any():
        b = int((counts == 0).nonzero()[0])
        raise ValueError(f"sample {b} has no observed value; drop it from the data set")
    for b in range(times.shape[0]):
        t = times[b][observed[b]]
        step = t[1:] - t[:-1]
        if (step == 0).any():
            i = int((step == 0).nonzero()[0])
            raise ValueError(
                f"sample {b} has duplicate observation time {float(t[i]):g}; merge the "
                "observations at one time into one slot (NaN for channels not observed)"
            )
        if (step < 0).any():
            i = int((step < 0).nonzero()[0])
            raise ValueError(
                f"sample {b} has unsorted times ({float(t[i]):g} then {float(t[i + 1]):g}); "
                "sort each sequence by time"
            )
