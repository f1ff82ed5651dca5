r"""Sensors and observations: point measurements of fields in physical coordinates.

An :class:`Observations` holds ``S`` sensor positions, the observed values of ``V``
variables there and the measurement noise std, so ``y = A(x) + \varepsilon`` with
``\varepsilon ~ N(0, noise_std^2 I)``. :meth:`Observations.operator` builds ``A``: a
differentiable gather that reads a field at the sensors by multilinear interpolation
between the ``2^d`` surrounding nodes (exact at nodes; periodic axes wrap around).

A value of NaN means "this variable was not read at this sensor": sensor sets that differ
between variables (the benchmark protocol of :meth:`Observations.per_variable`, which
draws the nodes of each observed channel independently) are stored as the union of the
positions with NaN where a variable was not observed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from sciml_diffusion.fields.dataset import FieldDataset, _axis_letter
from sciml_diffusion.fields.grid import Grid

__all__ = ["Observations", "SensorOperator"]


class Observations:
    """Point observations of field variables.

    Parameters
    ----------
    coords : array ``(S, d)``
        Sensor positions in physical coordinates, axes in the grid's CF order.
    values : tensor ``(S, V)`` or ``(B, S, V)``, optional
        Observed values per sensor and variable; ``B`` independent cases share the sensors.
    variables : sequence of str
        The ``V`` observed variables.
    noise_std : float
        Standard deviation of the measurement noise (>= 0).
    axes : sequence of str, optional
        Names of the ``d`` coordinates (default ``x`` / ``y, x`` / ``z, y, x``).
    """

    def __init__(
        self,
        coords,
        values=None,
        variables: Sequence[str] = ("u",),
        noise_std: float = 0.0,
        axes: Sequence[str] | None = None,
    ):
        coords = np.asarray(coords, dtype=np.float64)
        if coords.ndim == 1:
            coords = coords[:, None]
        if coords.ndim != 2 or coords.shape[0] < 1:
            raise ValueError(f"coords must have shape (sensors, dims), got {coords.shape}")
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.coords = coords
        self.variables = tuple([variables] if isinstance(variables, str) else variables)
        self.noise_std = float(noise_std)
        self.axes = (
            tuple(axes) if axes is not None else Grid([np.arange(2.0)] * coords.shape[1]).axes
        )
        self.values = None if values is None else self._check_values(values)

    def _check_values(self, values) -> torch.Tensor:
        values = torch.as_tensor(values, dtype=torch.float32)
        if values.ndim not in (2, 3) or tuple(values.shape[-2:]) != (
            len(self.coords),
            len(self.variables),
        ):
            raise ValueError(
                f"values of shape {tuple(values.shape)} must be (sensors={len(self.coords)}, "
                f"variables={len(self.variables)}) or (cases, sensors, variables)"
            )
        return values

    def __len__(self) -> int:
        return len(self.coords)

    def __repr__(self) -> str:
        cases = (
            "" if self.values is None or self.values.ndim == 2 else f", {len(self.values)} cases"
        )
        return (
            f"Observations({len(self)} sensors, variables={list(self.variables)}, "
            f"noise_std={self.noise_std}{cases})"
        )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def random(
        cls,
        source: FieldDataset | Grid,
        count: int | None = None,
        fraction: float | None = None,
        variables: Sequence[str] | None = None,
        seed: int = 0,
        noise_std: float = 0.0,
    ) -> Observations:
        """Sensors at ``count`` (or ``fraction`` of all) grid nodes drawn without replacement.

        From a :class:`FieldDataset`, only nodes valid (not NaN) in every sample are drawn
        and the values are read there, plus Gaussian noise of std ``noise_std``; the values
        have shape ``(B, S, V)``. From a :class:`Grid`, only positions are drawn.
        """
        if (count is None) == (fraction is None):
            raise ValueError("give exactly one of count= or fraction=")
        grid = source.grid if isinstance(source, FieldDataset) else source
        if not isinstance(grid, Grid):
            raise ValueError(
                f"source must be a FieldDataset or a Grid, got {type(source).__name__}"
            )
        if fraction is not None:
            if not 0 < fraction <= 1:
                raise ValueError(f"fraction must be in (0, 1], got {fraction}")
            count = max(1, int(round(fraction * grid.size)))
        valid = np.ones(grid.size, dtype=bool)
        if isinstance(source, FieldDataset):
            variables = list(variables) if variables is not None else list(source.variables)
            if source.has_time:
                raise ValueError(
                    "observations are taken at one time: select it first, isel(time=k)"
                )
            fields = source.to_tensor(variables)
            valid = source.mask(variables).flatten(-grid.ndim).all(dim=0).all(dim=0).numpy()
        elif variables is None:
            variables = ("u",)
        if count < 1 or count > valid.sum():
            raise ValueError(
                f"cannot place {count} sensors: the grid has {int(valid.sum())} valid nodes"
            )
        rng = np.random.default_rng(seed)
        nodes = np.sort(rng.choice(np.flatnonzero(valid), size=count, replace=False))
        index = np.unravel_index(nodes, grid.shape)
        coords = np.stack([c[i] for c, i in zip(grid.coords, index)], axis=1)
        values = None
        if isinstance(source, FieldDataset):
            values = fields.flatten(-grid.ndim)[..., torch.as_tensor(nodes)].transpose(-1, -2)
            noise = rng.standard_normal(values.shape).astype(np.float32)
            values = values + noise_std * torch.from_numpy(noise)
        return cls(coords, values, variables=variables, noise_std=noise_std, axes=grid.axes)

    @classmethod
    def per_variable(
        cls,
        dataset: FieldDataset,
        index: int = 0,
        count: int | None = None,
        fraction: float | None = None,
        variables: Sequence[str] | None = None,
        exclude_boundary: bool = False,
        seed: int = 0,
        noise_std: float = 0.0,
    ) -> Observations:
        """The benchmark observation protocol: random nodes drawn per observed variable.

        Sample ``index`` of ``dataset`` is read at exactly ``count`` grid nodes per variable
        (or ``fraction`` of the grid's nodes), drawn without replacement and independently
        for each variable, as in the DiffusionPDE and FunDPS benchmarks (500 noise-free points
        per observed channel at 128 x 128, about 3 %). The sensors are the union of the
        drawn nodes; a variable not drawn at a sensor is NaN there.

        Parameters
        ----------
        dataset : FieldDataset
            Fields without a ``time`` dim.
        index : int
            The sample (test case) observed.
        count, fraction : int or float
            Nodes per variable; give exactly one.
        variables : sequence of str, optional
            Observed variables (default all).
        exclude_boundary : bool
            Never draw nodes on the boundary of a non-periodic axis (where a
            boundary condition already fixes the solution).
        seed : int
            Seeds the draws (variable ``k`` uses ``seed + k``) and the noise.
        noise_std : float
            Std of Gaussian noise added to the values (0: the noise-free protocol).

        Returns
        -------
        Observations with values ``(S, V)``.
        """
        if (count is None) == (fraction is None):
            raise ValueError("give exactly one of count= or fraction=")
        if dataset.has_time:
            raise ValueError("observations are taken at one time: select it first, isel(time=k)")
        if not 0 <= index < len(dataset):
            raise ValueError(f"sample index {index} out of range: the data set has {len(dataset)}")
        grid = dataset.grid
        variables = list(variables) if variables is not None else list(dataset.variables)
        case = dataset.isel(sample=[index])
        fields = case.to_tensor(variables)[0].flatten(1)  # (V, N)
        finite = case.mask(variables)[0].flatten(1).numpy()  # (V, N)
        candidates = _candidate_nodes(grid, exclude_boundary)
        if fraction is not None:
            if not 0 < fraction <= 1:
                raise ValueError(f"fraction must be in (0, 1], got {fraction}")
            count = max(1, int(round(fraction * grid.size)))
        rng = np.random.default_rng(seed)
        drawn = []
        for k in range(len(variables)):
            valid = candidates & finite[k]
            if count < 1 or count > valid.sum():
                raise ValueError(
                    f"cannot place {count} sensors on {variables[k]!r}: the grid has "
                    f"{int(valid.sum())} eligible nodes"
                )
            pick = np.random.default_rng(seed + k).choice(
                np.flatnonzero(valid), size=count, replace=False
            )
            drawn.append(pick)
        nodes = np.unique(np.concatenate(drawn))
        values = np.full((len(nodes), len(variables)), np.nan, dtype=np.float32)
        for k, pick in enumerate(drawn):
            rows = np.searchsorted(nodes, pick)
            noise = noise_std * rng.standard_normal(len(pick))
            values[rows, k] = fields[k, torch.as_tensor(pick)].numpy() + noise
        index_nd = np.unravel_index(nodes, grid.shape)
        coords = np.stack([c[i] for c, i in zip(grid.coords, index_nd)], axis=1)
        return cls(coords, values, variables=variables, noise_std=noise_std, axes=grid.axes)

    @classmethod
    def from_xarray(cls, ds: xr.Dataset) -> Observations:
        """Read a data set with a ``sensor`` dim: coordinates per axis and values."""
        if "sensor" not in ds.dims:
            raise ValueError(f"observations need a 'sensor' dim; found dims {list(ds.dims)}")
        axes = [
            name
            for name in ds.variables
            if ds[name].dims == ("sensor",)
            and _axis_letter(ds, name) is not None
            and (name in ds.coords or name in ds.data_vars)
        ]
        order = {"Z": 0, "Y": 1, "X": 2}
        axes.sort(key=lambda a: order[_axis_letter(ds, a)])
        if not axes:
            raise ValueError(
                "no sensor coordinates found: give variables like x(sensor), y(sensor)"
            )
        coords = np.stack([np.asarray(ds[a].values, dtype=np.float64) for a in axes], axis=1)
        names = [v for v in ds.data_vars if "sensor" in ds[v].dims and v not in axes]
        values = None
        if names:
            arrays = [ds[v].transpose(..., "sensor").values for v in names]
            values = np.stack(arrays, axis=-1)
        return cls(
            coords,
            values,
            variables=names or ("u",),
            noise_std=float(ds.attrs.get("noise_std", 0.0)),
            axes=axes,
        )

    def to_xarray(self) -> xr.Dataset:
        """A data set with dim ``sensor`` (and ``sample`` for several cases)."""
        coords = {
            a: ("sensor", self.coords[:, i], {"axis": _cf_letter(a, i, len(self.axes))})
            for i, a in enumerate(self.axes)
        }
        data = {}
        if self.values is not None:
            dims = ("sensor",) if self.values.ndim == 2 else ("sample", "sensor")
            for k, v in enumerate(self.variables):
                data[v] = (dims, self.values[..., k].numpy())
        return xr.Dataset(data, coords=coords, attrs={"noise_std": self.noise_std})

    # ------------------------------------------------------------------ operator
    def operator(self, grid: Grid, channels: Sequence[str] | None = None) -> SensorOperator:
        """The observation map ``A``: fields ``(B, C, *grid.shape)`` to ``(B, S, V)``.

        ``channels`` names the ``C`` channels of the fields (default: the observed
        variables, in order); observed variables are picked from them.
        """
        channels = list(channels) if channels is not None else list(self.variables)
        missing = [v for v in self.variables if v not in channels]
        if missing:
            raise ValueError(f"observed variables {missing} are not among the channels {channels}")
        if grid.ndim != self.coords.shape[1]:
            raise ValueError(
                f"sensors have {self.coords.shape[1]} coordinates, the grid {grid.ndim} axes"
            )
        grid.check_points(self.coords)
        return SensorOperator(grid, self.coords, [channels.index(v) for v in self.variables])


class SensorOperator:
    """Differentiable multilinear gather ``A(x)`` of fields at sensor positions.

    Parameters
    ----------
    grid : Grid
        The grid of the fields.
    coords : array ``(S, d)``
        Sensor positions inside the grid's domain.
    channels : sequence of int
        Channels of the field that are observed, in the order of the output's last dim.
    """

    def __init__(self, grid: Grid, coords: np.ndarray, channels: Sequence[int]):
        self.grid = grid
        self.channels = list(channels)
        index, weight = _multilinear_stencil(grid, coords)
        self.index = torch.as_tensor(index)  # (S, 2^d) flat node indices
        self.weight = torch.as_tensor(weight, dtype=torch.float32)  # (S, 2^d)
        self._on_device: dict = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Read ``x`` of shape ``(B, C, *spatial)`` at the sensors: ``(B, S, V)``."""
        if tuple(x.shape[-self.grid.ndim :]) != self.grid.shape:
            raise ValueError(
                f"field of shape {tuple(x.shape)} does not match the grid {self.grid.shape}"
            )
        flat = x[:, self.channels].flatten(-self.grid.ndim)  # (B, V, N)
        index, weight = self._stencil(x.device, x.dtype)
        gathered = flat[..., index]  # (B, V, S, 2^d)
        return (gathered * weight).sum(-1).transpose(-1, -2)

    def _stencil(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Index and weights on ``device`` (copied there once, not on every call)."""
        key = (str(device), dtype)
        if key not in self._on_device:
            self._on_device[key] = (
                self.index.to(device),
                self.weight.to(device=device, dtype=dtype),
            )
        return self._on_device[key]

    def dense(self) -> torch.Tensor:
        """The matrix ``(S, N)`` of one channel's gather (for small grids and tests)."""
        matrix = torch.zeros(len(self.index), self.grid.size, dtype=torch.float64)
        matrix.scatter_add_(1, self.index, self.weight.double())
        return matrix


def _candidate_nodes(grid: Grid, exclude_boundary: bool) -> np.ndarray:
    """Flat boolean mask ``(N,)`` of the nodes sensors may be drawn at."""
    mask = np.ones(grid.shape, dtype=bool)
    if exclude_boundary:
        for axis, periodic in enumerate(grid.periodic):
            if not periodic:
                edge = [slice(None)] * grid.ndim
                for end in (0, -1):
                    edge[axis] = end
                    mask[tuple(edge)] = False
    return mask.reshape(-1)


def _multilinear_stencil(grid: Grid, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices and weights ``(S, 2^d)`` of the nodes around each point."""
    lows, fracs = [], []
    for axis in range(grid.ndim):
        c = grid.coords[axis]
        n = c.size
        p = coords[:, axis]
        if grid.periodic[axis]:
            h = grid.lengths[axis] / n
            pos = np.mod((p - c[0]) / h, n)
            low = np.floor(pos).astype(np.int64) % n
            high = (low + 1) % n
        else:
            pos = np.interp(p, c, np.arange(n))
            low = np.minimum(np.floor(pos).astype(np.int64), n - 2)
            high = low + 1
        lows.append((low, high))
        fracs.append(pos - np.floor(pos) if grid.periodic[axis] else pos - low)
    strides = np.cumprod((1,) + grid.shape[::-1])[:-1][::-1]
    index, weight = [], []
    for corner in np.ndindex(*(2,) * grid.ndim):
        flat = sum(lows[a][bit] * strides[a] for a, bit in enumerate(corner))
        w = np.prod([fracs[a] if bit else 1 - fracs[a] for a, bit in enumerate(corner)], axis=0)
        index.append(flat)
        weight.append(w)
    return np.stack(index, axis=1), np.stack(weight, axis=1)


def _cf_letter(name: str, i: int, ndim: int) -> str:
    from sciml_diffusion.fields.dataset import _NAME_AXIS

    return _NAME_AXIS.get(name.lower(), {1: "X", 2: "YX", 3: "ZYX"}[ndim][i])
