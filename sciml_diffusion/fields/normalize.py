"""Normalizer: per-variable affine standardisation ``(x - mean) / std``.

Statistics are fitted on valid points only (NaN excluded) and saved as JSON with every
checkpoint, so a model always sees data scaled the way it was trained.

They are computed in one streaming pass: the data are read a block of samples (or time
steps) at a time, each block gives its count, mean and sum of squared deviations
:math:`M_2`, and blocks are merged with the pairwise update of Chan, Golub & LeVeque
(1979, "Updating formulae and a pairwise algorithm for computing sample variances"):

    n = n_a + n_b,   d = mean_b - mean_a,   mean = mean_a + d n_b / n,
    M2 = M2_a + M2_b + d^2 n_a n_b / n,

so data larger than memory (lazy dask arrays) are never loaded whole, and the result
equals the in-memory ``nanmean``/``nanstd`` to float precision.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from sciml_diffusion.fields.dataset import FieldDataset

__all__ = ["Normalizer", "Moments", "streaming_moments", "normalized_std", "BLOCK_BYTES"]

#: bytes of float64 values read at a time by the streaming passes
BLOCK_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations ``M2`` of a set of values (float64).

    ``Moments.of(a).merge(Moments.of(b))`` equals ``Moments.of(concatenate(a, b))`` up to
    rounding (Chan et al. 1979); ``std`` is the population standard deviation.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values) -> Moments:
        """Moments of the non-NaN entries of an array of any shape."""
        values = np.asarray(values, dtype=np.float64)
        valid = values[~np.isnan(values)]
        if valid.size == 0:
            return cls()
        mean = float(valid.mean())
        return cls(int(valid.size), mean, float(np.square(valid - mean).sum()))

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of both sets (Chan, Golub & LeVeque's pairwise update)."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / n
        return Moments(n, mean, m2)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else float("nan")


def streaming_moments(
    dataset: FieldDataset, variables: Sequence[str], block_bytes: int = BLOCK_BYTES
) -> dict[str, Moments]:
    """:class:`Moments` of each variable over its valid points, reading a block at a time.

    Lazy (dask) variables are read in blocks of about ``block_bytes`` along their first
    dim (``sample`` or ``time``); in-memory ones in one block.

    Raises
    ------
    ValueError
        If a variable holds infinite values (mark missing data as NaN instead).
    """
    out = {}
    for v in variables:
        total = Moments()
        for block in _blocks(dataset.xarray[v], block_bytes):
            if np.isinf(block).any():
                raise ValueError(
                    f"variable {v!r} contains infinite values; remove them or mark them NaN"
                )
            total = total.merge(Moments.of(block))
        out[v] = total
    return out


def normalized_std(moments: Mapping[str, Moments], normalizer: Normalizer) -> float:
    """Standard deviation (``n - 1``) of every variable's normalised values pooled together.

    Each variable's moments are mapped through ``(x - mean) / std`` and merged (Chan et
    al.), so no pass over the data is needed; 1 with fewer than two values.
    """
    total = Moments()
    for v, m in moments.items():
        c = normalizer.variables.index(v)
        mean, std = normalizer.mean[c], normalizer.std[c]
        total = total.merge(Moments(m.count, (m.mean - mean) / std, m.m2 / std**2))
    return math.sqrt(total.m2 / (total.count - 1)) if total.count > 1 else 1.0


def _blocks(arr: xr.DataArray, block_bytes: int) -> Iterator[np.ndarray]:
    """float64 values of ``arr`` in consecutive slices of its first dim."""
    if arr.chunks is None or arr.ndim == 0:
        yield np.asarray(arr.values, dtype=np.float64)
        return
    dim, n = arr.dims[0], arr.shape[0]
    per_row = max(1, arr.size // max(n, 1) * 8)
    step = max(1, block_bytes // per_row)
    if arr.chunks[0]:  # whole dask chunks per block, so no chunk is read twice
        chunk = max(arr.chunks[0])
        step = max(chunk, step // chunk * chunk)
    for start in range(0, n, step):
        yield np.asarray(arr.isel({dim: slice(start, start + step)}).values, dtype=np.float64)


class Normalizer:
    """Per-variable mean and standard deviation.

    Parameters
    ----------
    variables : sequence of str
        Variable names; on tensors they are the channels, in this order.
    mean, std : sequence of float
        One entry per variable; ``std`` must be positive.
    spatial_ndim : int
        Number of spatial dims, which locates the channel dim of a tensor
        ``(..., C, *spatial)``.
    """

    def __init__(
        self,
        variables: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        spatial_ndim: int,
    ):
        self.variables = tuple(variables)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.spatial_ndim = int(spatial_ndim)
        if not len(self.variables) == len(self.mean) == len(self.std):
            raise ValueError("variables, mean and std must have one entry per variable")
        bad = [v for v, s in zip(self.variables, self.std) if not s > 0]
        if bad:
            raise ValueError(f"std must be positive; got non-positive std for {bad}")

    @classmethod
    def fit(cls, dataset: FieldDataset, variables: Sequence[str] | None = None) -> Normalizer:
        """Statistics of each variable over its valid (non-NaN) points, in one streaming pass.

        A constant variable (zero spread) gets ``std = 1`` so it is only shifted. Lazy data
        are read a block at a time (:func:`streaming_moments`).
        """
        dataset = dataset if isinstance(dataset, FieldDataset) else FieldDataset(dataset)
        variables = list(variables) if variables is not None else list(dataset.variables)
        missing = [v for v in variables if v not in dataset.variables]
        if missing:
            raise ValueError(
                f"variable {missing[0]!r} not in the data set; available: "
                f"{list(dataset.variables)}"
            )
        return cls.from_moments(streaming_moments(dataset, variables), dataset.grid.ndim)

    @classmethod
    def from_moments(cls, moments: Mapping[str, Moments], spatial_ndim: int) -> Normalizer:
        """Statistics from per-variable :class:`Moments` (e.g. of :func:`streaming_moments`)."""
        means, stds = [], []
        for v, m in moments.items():
            if m.count == 0:
                raise ValueError(f"variable {v!r} has no valid (non-NaN) values to fit")
            means.append(m.mean)
            stds.append(m.std if m.std > 0 else 1.0)
        return cls(list(moments), means, stds, spatial_ndim=spatial_ndim)

    # ------------------------------------------------------------------ apply
    def normalize(self, x):
        """``(x - mean) / std`` of a tensor ``(..., C, *spatial)`` or an xarray Dataset."""
        return self._apply(x, forward=True)

    def denormalize(self, x):
        """``x * std + mean``; inverse of :meth:`normalize`."""
        return self._apply(x, forward=False)

    def _apply(self, x, forward: bool):
        if isinstance(x, FieldDataset):
            return FieldDataset(
                self._apply_xarray(x.xarray, forward),
                variables=x.variables,
                decreasing=x.decreasing,
            )
        if isinstance(x, xr.Dataset):
            return self._apply_xarray(x, forward)
        mean, std = self._stats(x)
        return (x - mean) / std if forward else x * std + mean

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dim = x.ndim - self.spatial_ndim - 1
        if dim < 0 or x.shape[dim] != len(self.variables):
            raise ValueError(
                f"tensor of shape {tuple(x.shape)} has no channel dim of size "
                f"{len(self.variables)} ({list(self.variables)}) before {self.spatial_ndim} "
                "spatial dims"
            )
        shape = [len(self.variables)] + [1] * self.spatial_ndim
        kw = {"dtype": x.dtype, "device": x.device}
        return torch.tensor(self.mean, **kw).reshape(shape), torch.tensor(self.std, **kw).reshape(
            shape
        )

    def _apply_xarray(self, ds: xr.Dataset, forward: bool) -> xr.Dataset:
        ds = ds.copy()
        for v, mean, std in zip(self.variables, self.mean, self.std):
            if v in ds:
                ds[v] = (ds[v] - mean) / std if forward else ds[v] * std + mean
                ds[v].attrs = dict(ds[v].attrs)
        return ds

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """JSON-serialisable state."""
        return {
            "variables": list(self.variables),
            "mean": list(self.mean),
            "std": list(self.std),
            "spatial_ndim": self.spatial_ndim,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Normalizer:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(data["variables"], data["mean"], data["std"], data["spatial_ndim"])
        except KeyError as error:
            raise ValueError(f"normalizer JSON lacks the field {error.args[0]!r}") from error

    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics as JSON (atomically)."""
        from sciml_diffusion.fields.io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Normalizer:
        """Read statistics written by :meth:`save`."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"no normalizer file at {path}")
        try:
            data = json.loads(open(path).read())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a normalizer JSON file: {error}") from error
        return cls.from_dict(data)

    def __repr__(self) -> str:
        stats = ", ".join(
            f"{v}: {m:.4g}\u00b1{s:.4g}" for v, m, s in zip(self.variables, self.mean, self.std)
        )
        return f"Normalizer({stats})"
