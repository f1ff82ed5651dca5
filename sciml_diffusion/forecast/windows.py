"""Training windows: ``context + horizon`` consecutive frames cut from a data set with time.

A window starts at time index ``s`` of one trajectory (``sample``) and spans frames
``s, ..., s + L - 1`` with ``L = context + horizon``; every start with ``s + L <= T`` is a
window, so a window never leaves its trajectory. Training and validation data are split
*before* windows are cut (:func:`split_time`: the last fraction of the time axis, or whole
trajectories), so no window spans the train/validation boundary.

NaN ("no data", e.g. land) becomes 0 in the tensors and False in the mask; every loss
averages over the mask only.

Data larger than memory: for a lazy (dask) data set :meth:`Windows.of` reads each batch
of windows from disk (:class:`~sciml_diffusion.fields.batches.LazyFrames`), and
:func:`fit_statistics` computes the normaliser and the data's spread in one streaming pass.
"""

from __future__ import annotations

import numpy as np
import torch

from sciml_diffusion.fields import FieldDataset, Normalizer
from sciml_diffusion.fields.batches import LazyFrames
from sciml_diffusion.fields.normalize import normalized_std, streaming_moments

__all__ = ["Windows", "split_time", "check_time_data", "time_tensor", "fit_statistics"]


def check_time_data(dataset: FieldDataset, length: int, what: str = "training") -> int:
    """The number of time steps of ``dataset``; a clear error if there are too few.

    Raises
    ------
    ValueError
        For data without a ``time`` dim, or with fewer than ``length`` steps.
    """
    if not isinstance(dataset, FieldDataset):
        raise ValueError(f"expected a FieldDataset, got {type(dataset).__name__}")
    if not dataset.has_time or "time" not in dataset.xarray.dims:
        raise ValueError(
            f"the {what} data have no 'time' dim (dims: {list(dataset.xarray.dims)}); a "
            "forecaster learns from trajectories: give the file a time dimension"
        )
    steps = int(dataset.xarray.sizes["time"])
    if steps < length:
        raise ValueError(
            f"the {what} data have {steps} time steps; windows of context + horizon need at "
            f"least {length}: add time steps or lower --context/--horizon"
        )
    return steps


def time_tensor(dataset: FieldDataset, variables, normalizer: Normalizer):
    """Normalised fields ``(S, T, C, *spatial)`` (0 where NaN) and their mask, same shape."""
    x = dataset.to_tensor(variables)
    mask = dataset.mask(variables)
    if x.ndim == mask.ndim and x.ndim == len(dataset.spatial_dims) + 2:  # no sample dim
        x, mask = x[None], mask[None]
    x = normalizer.normalize(x)
    x = torch.where(mask, x, torch.zeros_like(x))
    if not torch.isfinite(x).all():
        raise ValueError("the data contain infinite values; remove them or mark them NaN")
    return x.float(), mask


def fit_statistics(dataset: FieldDataset, variables) -> tuple[Normalizer, float]:
    """The :class:`Normalizer` of ``dataset`` and the std of its normalised valid values.

    Data in memory are normalised as a tensor; lazy data are read once, a block at a
    time, and the spread follows from the per-variable moments (Chan et al.'s merge).
    """
    if not dataset.is_lazy:
        normalizer = Normalizer.fit(dataset, variables)
        x, mask = time_tensor(dataset, variables, normalizer)
        values = x[mask]
        return normalizer, float(values.std()) if values.numel() > 1 else 1.0
    missing = [v for v in variables if v not in dataset.variables]
    if missing:
        raise ValueError(f"variables {missing} not in the data; available: {dataset.variables}")
    moments = streaming_moments(dataset, list(variables))
    normalizer = Normalizer.from_moments(moments, dataset.grid.ndim)
    return normalizer, normalized_std(moments, normalizer)


def split_time(dataset: FieldDataset, val_fraction: float, by: str = "time"):
    """Split into disjoint training and validation data sets before cutting windows.

    Parameters
    ----------
    dataset : FieldDataset
        With a ``time`` dim.
    val_fraction : float
        Fraction held out, in ``[0, 1)``.
    by : ``"time"`` or ``"sample"``
        ``"time"``: the last ``val_fraction`` of every trajectory's time steps;
        ``"sample"``: the last ``val_fraction`` of the trajectories.

    Returns
    -------
    (train, val) : FieldDataset, FieldDataset or None
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if by not in ("time", "sample"):
        raise ValueError(f"split by 'time' or 'sample', got {by!r}")
    if by == "sample" and "sample" not in dataset.xarray.dims:
        raise ValueError("the data have no 'sample' dim to split along; split by 'time'")
    n = int(dataset.xarray.sizes[by])
    n_val = int(round(val_fraction * n))
    if n_val == 0:
        return dataset, None
    return dataset.isel(**{by: slice(0, n - n_val)}), dataset.isel(**{by: slice(n - n_val, n)})


class Windows:
    """All windows of ``length`` frames of a tensor of trajectories.

    Parameters
    ----------
    x : torch.Tensor ``(S, T, C, *spatial)`` or LazyFrames
        Normalised trajectories (0 where masked), or a reader of them (windows are then
        read from disk per batch; see :meth:`of`).
    mask : torch.Tensor of bool, same shape
        True where data exist (``None`` with a reader).
    length : int
        Frames per window (context + horizon).
    """

    def __init__(self, x: torch.Tensor, mask: torch.Tensor, length: int):
        if x.shape[1] < length:
            raise ValueError(f"trajectories have {x.shape[1]} frames, windows need {length}")
        self.x, self.mask, self.length = x, mask, int(length)
        starts = np.arange(x.shape[1] - length + 1)
        samples = np.arange(x.shape[0])
        grid = np.stack(np.meshgrid(samples, starts, indexing="ij"), -1).reshape(-1, 2)
        #: ``(N, 2)`` rows of (sample, first time index)
        self.index = torch.as_tensor(grid, dtype=torch.long)

    @classmethod
    def of(
        cls,
        dataset: FieldDataset,
        variables,
        normalizer: Normalizer,
        length: int,
        pin_memory: bool = False,
    ) -> Windows:
        """Windows of a data set: its tensors in memory, or read per batch when it is lazy
        (through page-locked memory to a CUDA device with ``pin_memory``)."""
        if dataset.is_lazy:
            reader = LazyFrames(dataset, variables, normalizer, pin_memory=pin_memory)
            return cls(reader, None, length)
        return cls(*time_tensor(dataset, variables, normalizer), length)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def time_indices(self, rows: torch.Tensor) -> torch.Tensor:
        """Time indices ``(B, length)`` covered by windows ``rows``."""
        return self.index[rows, 1:2] + torch.arange(self.length)

    def take(self, rows: torch.Tensor, device=None):
        """Windows ``rows`` as ``(B, length, C, *spatial)`` tensors (fields, mask)."""
        if isinstance(self.x, LazyFrames):
            return self.x.windows(self.index[rows, 0], self.index[rows, 1], self.length, device)
        samples = self.index[rows, 0][:, None]
        times = self.time_indices(rows)
        x, mask = self.x[samples, times], self.mask[samples, times]
        return x.to(device), mask.to(device)

    def draw(self, batch: int, generator: torch.Generator, device=None):
        """A random batch of windows (with replacement) from ``generator``."""
        rows = torch.randint(len(self), (batch,), generator=generator)
        return self.take(rows, device)
