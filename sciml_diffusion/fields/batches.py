"""Batch readers: normalised, masked ``(B, C, *spatial)`` tensors for chosen sample rows.

A training loop asks a reader for rows ``idx`` and gets ``(x, mask)`` on its device:
``x`` normalised, 0 where the data have NaN, ``mask`` True where they have values. Two
readers share that interface:

- :class:`TensorBatches` holds the whole tensor (on the device): indexing, nothing read.
- :class:`LazyBatches` reads the rows from a lazy (dask) :class:`FieldDataset` per batch,
  the rows of every variable in one ``dask.compute`` -> normalise -> mask -> tensor, so
  only the chunks holding the batch are read and only the batch is kept in memory.
  Under DDP each rank asks only for its own rows, so it reads only its shard.

:class:`LazyFrames` does the same for windows of consecutive time steps of trajectories
(``forecast train``).

With ``pin_memory=True`` a lazy batch is copied into page-locked memory and sent to a CUDA
device with ``non_blocking=True``; on a CPU device the option does nothing.
:meth:`blocks` walks all rows a block at a time for whole-data statistics (``sigma_data``,
boundary checks) in one streaming pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dask
import numpy as np
import torch

from sciml_diffusion.fields.dataset import FieldDataset
from sciml_diffusion.fields.normalize import BLOCK_BYTES, Normalizer

__all__ = ["TensorBatches", "LazyBatches", "LazyFrames"]


class TensorBatches:
    """Rows of tensors already in memory.

    Parameters
    ----------
    x : torch.Tensor ``(N, C, *spatial)``
        Normalised fields, 0 where masked.
    mask : torch.Tensor of bool ``(N, C or 1, *spatial)``
        True where data exist.
    device : torch.device, optional
        Where the tensors live (moved there once).
    """

    def __init__(self, x: torch.Tensor, mask: torch.Tensor, device=None):
        self.x, self.mask = x.to(device), mask.to(device)
        self.device = self.x.device

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, C, *spatial)``."""
        return tuple(self.x.shape)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``idx`` as ``(x, mask)`` on the reader's device."""
        idx = torch.as_tensor(idx).to(self.x.device)
        return self.x[idx], self.mask[idx]

    def blocks(self, idx: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """All rows ``idx`` (default: every row) in one block ``(x, mask)``."""
        yield self.batch(torch.arange(len(self)) if idx is None else idx)


class LazyBatches:
    """Rows read from a (lazy) data set per batch; never the whole array.

    Parameters
    ----------
    dataset : FieldDataset
        With a ``sample`` dim (dask-backed, or in memory: both work).
    variables : sequence of str
        Channels, in order.
    normalizer : Normalizer
        Applied to every batch.
    device : torch.device, optional
        Where batches go.
    pin_memory : bool
        Page-locked host copy and a non-blocking transfer on CUDA; no-op elsewhere.
    block_bytes : int
        Size of the blocks of :meth:`blocks` (float64 bytes).
    """

    def __init__(
        self,
        dataset: FieldDataset,
        variables: Sequence[str],
        normalizer: Normalizer,
        device=None,
        pin_memory: bool = False,
        block_bytes: int = BLOCK_BYTES,
    ):
        expected = ("sample", *dataset.spatial_dims)
        for v in variables:
            if dataset.xarray[v].dims != expected:
                raise ValueError(
                    f"variable {v!r} has dims {dataset.xarray[v].dims}; a batch reader reads "
                    f"rows of {expected}: select or stack the other dims first"
                )
        self.dataset, self.variables = dataset, list(variables)
        self.normalizer = normalizer
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.pin_memory = bool(pin_memory) and self.device.type == "cuda"
        self.block_bytes = int(block_bytes)
        spatial = dataset.grid.shape
        self._shape = (len(dataset), len(self.variables), *spatial)

    def __len__(self) -> int:
        return self._shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, C, *spatial)``."""
        return self._shape

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``idx`` (any order, repeats allowed) as ``(x, mask)`` on the device.

        Each distinct row is read once, in increasing order (contiguous reads on disk).
        """
        rows = torch.as_tensor(idx).reshape(-1).cpu().numpy()
        unique, inverse = np.unique(rows, return_inverse=True)
        x, mask = self._read(unique)
        inverse = torch.from_numpy(inverse.reshape(-1))
        if not np.array_equal(unique, rows):
            x, mask = x[inverse], mask[inverse]
        return self._to_device(x), self._to_device(mask)

    def blocks(self, idx: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """Rows ``idx`` (default: all), sorted, a block of about ``block_bytes`` at a time."""
        rows = np.arange(len(self)) if idx is None else np.sort(torch.as_tensor(idx).numpy())
        per_row = 8 * int(np.prod(self._shape[1:]))
        step = max(1, self.block_bytes // per_row)
        for start in range(0, len(rows), step):
            yield self._read(rows[start : start + step])

    def _read(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        picked = [self.dataset.xarray[v].data[rows] for v in self.variables]
        values = np.stack([np.asarray(p, np.float64) for p in dask.compute(*picked)], axis=1)
        mask = torch.from_numpy(~np.isnan(values))
        x = torch.as_tensor(np.nan_to_num(values, nan=0.0), dtype=torch.float32)
        x = torch.where(mask, self.normalizer.normalize(x), torch.zeros_like(x))
        if not torch.isfinite(x).all():
            raise ValueError("the data contain infinite values; remove them or mark them NaN")
        return x.float(), mask

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return _to_device(tensor, self.device, self.pin_memory)


class LazyFrames:
    """Trajectories ``(S, T, C, *spatial)`` of a (lazy) data set, read a window at a time.

    Parameters
    ----------
    dataset : FieldDataset
        With a ``time`` dim (and optionally ``sample``; without it ``S = 1``).
    variables : sequence of str
        Channels, in order.
    normalizer : Normalizer
        Applied to every window.
    pin_memory : bool
        Page-locked host copy and a non-blocking transfer to a CUDA device; no-op elsewhere.
    """

    def __init__(
        self,
        dataset: FieldDataset,
        variables: Sequence[str],
        normalizer: Normalizer,
        pin_memory: bool = False,
    ):
        leading = tuple(d for d in ("sample", "time") if d in dataset.xarray.dims)
        expected = (*leading, *dataset.spatial_dims)
        for v in variables:
            if dataset.xarray[v].dims != expected or "time" not in leading:
                raise ValueError(
                    f"variable {v!r} has dims {dataset.xarray[v].dims}; windows are read from "
                    f"{expected} with a time dim: select or stack the other dims first"
                )
        self.dataset, self.variables, self.normalizer = dataset, list(variables), normalizer
        self.pin_memory = bool(pin_memory)
        self.has_sample = "sample" in leading
        sizes = dataset.xarray.sizes
        samples = sizes["sample"] if self.has_sample else 1
        self.shape = (samples, sizes["time"], len(self.variables), *dataset.grid.shape)

    def windows(self, samples: torch.Tensor, starts: torch.Tensor, length: int, device=None):
        """Windows ``(B, length, C, *spatial)`` (fields, mask) from ``starts`` of ``samples``."""
        picked = []
        for s, t in zip(samples.tolist(), starts.tolist()):
            where = (s, slice(t, t + length)) if self.has_sample else (slice(t, t + length),)
            picked.extend(self.dataset.xarray[v].data[where] for v in self.variables)
        arrays = [np.asarray(a, np.float64) for a in dask.compute(*picked)]
        c = len(self.variables)
        values = np.stack([np.stack(arrays[i : i + c], axis=1) for i in range(0, len(arrays), c)])
        mask = torch.from_numpy(~np.isnan(values))
        x = torch.as_tensor(np.nan_to_num(values, nan=0.0), dtype=torch.float32)
        x = torch.where(mask, self.normalizer.normalize(x), torch.zeros_like(x))
        if not torch.isfinite(x).all():
            raise ValueError("the data contain infinite values; remove them or mark them NaN")
        return _to_device(x, device, self.pin_memory), _to_device(mask, device, self.pin_memory)


def _to_device(tensor: torch.Tensor, device, pin_memory: bool) -> torch.Tensor:
    """``tensor`` on ``device``; through page-locked memory (non-blocking) to a CUDA one."""
    if pin_memory and device is not None and torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
