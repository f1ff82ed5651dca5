"""Normalizer: per-variable affine standardisation ``(x - mean) / std``.

Statistics are fitted on valid points only (NaN excluded) and saved as JSON with every
checkpoint, so a model always sees data scaled the way it was trained.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from sciml_diffusion.fields.dataset import FieldDataset

__all__ = ["Normalizer"]


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
        """Statistics of each variable over its valid (non-NaN) points.

        A constant variable (zero spread) gets ``std = 1`` so it is only shifted.
        """
        dataset = dataset if isinstance(dataset, FieldDataset) else FieldDataset(dataset)
        variables = list(variables) if variables is not None else list(dataset.variables)
        means, stds = [], []
        for v in variables:
            if v not in dataset.variables:
                raise ValueError(
                    f"variable {v!r} not in the data set; available: {list(dataset.variables)}"
                )
            values = np.asarray(dataset.xarray[v].values, dtype=np.float64)
            if np.isnan(values).all():
                raise ValueError(f"variable {v!r} has no valid (non-NaN) values to fit")
            means.append(float(np.nanmean(values)))
            std = float(np.nanstd(values))
            stds.append(std if std > 0 else 1.0)
        return cls(variables, means, stds, spatial_ndim=dataset.grid.ndim)

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
