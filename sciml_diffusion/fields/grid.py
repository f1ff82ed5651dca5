"""Grids described by their coordinates, and resampling of fields between grids.

A :class:`Grid` holds one coordinate vector per spatial axis (CF order: ``z, y, x`` or
``lat, lon``), a periodic flag per axis and the units. Two conventions for regular grids:

- periodic axis of length ``L`` with ``n`` nodes: ``x_j = x_0 + j L / n`` (no duplicate
  end point), spacing ``h = L / n``;
- bounded axis ``[x_0, x_0 + L]`` with ``n`` nodes: ``x_j = x_0 + j L / (n - 1)``, both
  boundary nodes included, spacing ``h = L / (n - 1)``.

Longitudes (by name, ``standard_name`` or ``degrees_east`` units) that are uniformly spaced
and cover 360 degrees are periodic, whether they run 0-360 or -180-180; spacing is judged
uniform up to the rounding of float32 coordinates, as most files store them.

Resampling a field between two grids of the same domain is spectral (trigonometric
interpolation, zero-padding or truncation of the Fourier series) along periodic axes and
linear along bounded axes; both are separable, so a field is resampled one axis at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Grid", "resample", "DEFAULT_AXES"]

#: default axis names by number of spatial dimensions (CF order)
DEFAULT_AXES = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}

_UNIFORM_RTOL = 1e-6
#: CF units of longitude (a coordinate with these units wraps around at 360 degrees)
_LONGITUDE_UNITS = ("degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese")


@dataclass(frozen=True, eq=False)
class Grid:
    """A rectilinear grid given by its node coordinates.

    Parameters
    ----------
    coords : sequence of 1-D arrays
        Node coordinates per spatial axis, increasing, in CF order (slowest axis first).
    axes : sequence of str, optional
        Axis (dimension) names; default ``x`` / ``y, x`` / ``z, y, x``.
    periodic : bool or sequence of bool
        Whether each axis is periodic.
    units : str or sequence of str, optional
        Physical units of each axis, kept in the xarray attributes.
    """

    coords: tuple[np.ndarray, ...]
    axes: tuple[str, ...]
    periodic: tuple[bool, ...]
    units: tuple[str, ...]

    def __init__(self, coords, axes=None, periodic=False, units=""):
        coords = tuple(np.ascontiguousarray(c, dtype=np.float64).reshape(-1) for c in coords)
        ndim = len(coords)
        if ndim < 1:
            raise ValueError("a grid needs at least one axis; pass one coordinate array per axis")
        axes = tuple(axes) if axes is not None else DEFAULT_AXES.get(ndim)
        if axes is None or len(axes) != ndim:
            raise ValueError(f"give {ndim} axis names for {ndim} coordinate arrays, got {axes}")
        for name, c in zip(axes, coords):
            if c.size < 2:
                raise ValueError(f"axis {name!r} has {c.size} node(s); a grid axis needs >= 2")
            if np.any(np.diff(c) <= 0):
                raise ValueError(f"coordinates of axis {name!r} must be strictly increasing")
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "periodic", _per_axis(periodic, ndim, "periodic", bool))
        object.__setattr__(self, "units", _per_axis(units, ndim, "units", str))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def regular(
        cls,
        shape: int | Sequence[int],
        lengths: float | Sequence[float] = 1.0,
        periodic: bool | Sequence[bool] = False,
        origin: float | Sequence[float] = 0.0,
        axes: Sequence[str] | None = None,
        units: str | Sequence[str] = "",
    ) -> Grid:
        """A uniform grid of ``shape`` nodes on ``[origin, origin + lengths]`` per axis.

        Periodic axes have ``n`` nodes ``origin + j L / n``; bounded axes include both ends.
        """
        shape = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
        ndim = len(shape)
        lengths = _per_axis(lengths, ndim, "lengths", float)
        origin = _per_axis(origin, ndim, "origin", float)
        periodic = _per_axis(periodic, ndim, "periodic", bool)
        coords = []
        for n, length, x0, per in zip(shape, lengths, origin, periodic):
            if length <= 0:
                raise ValueError(f"grid lengths must be positive, got {length}")
            if per:
                coords.append(x0 + np.arange(n) * (length / n))
            else:
                coords.append(np.linspace(x0, x0 + length, n))
        return cls(coords, axes=axes, periodic=periodic, units=units)

    @classmethod
    def from_xarray(cls, obj, axes: Sequence[str] | None = None) -> Grid:
        """The grid of an xarray Dataset/DataArray's spatial dimensions.

        Spatial dims are found by CF attributes or usual names
        (see :func:`sciml_diffusion.fields.dataset.spatial_dims`); periodicity is read from
        the coordinate attribute ``periodic`` (1/0) and otherwise inferred for longitudes
        that wrap around 360 degrees.
        """
        from sciml_diffusion.fields.dataset import spatial_dims

        axes = tuple(axes) if axes is not None else spatial_dims(obj)
        coords, periodic, units = [], [], []
        for name in axes:
            if name not in obj.coords:
                values = np.arange(obj.sizes[name], dtype=np.float64)
                attrs = {}
            else:
                values = np.asarray(obj[name].values, dtype=np.float64)
                attrs = obj[name].attrs
            coords.append(values)
            periodic.append(_is_periodic(name, values, attrs))
            units.append(str(attrs.get("units", "")))
        return cls(coords, axes=axes, periodic=periodic, units=units)

    # ------------------------------------------------------------------ properties
    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return len(self.coords)

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of nodes per axis."""
        return tuple(c.size for c in self.coords)

    @property
    def size(self) -> int:
        """Total number of nodes."""
        return int(np.prod(self.shape))

    @property
    def is_uniform(self) -> bool:
        """True where every axis has constant spacing."""
        return all(_uniform(c) for c in self.coords)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Node spacing per axis; raises for a non-uniform axis."""
        out = []
        for name, c in zip(self.axes, self.coords):
            if not _uniform(c):
                raise ValueError(
                    f"axis {name!r} is not uniformly spaced; resample onto a regular grid first"
                )
            out.append(float((c[-1] - c[0]) / (c.size - 1)))
        return tuple(out)

    @property
    def lengths(self) -> tuple[float, ...]:
        """Domain length per axis: ``n h`` if periodic, ``x_{n-1} - x_0`` otherwise."""
        out = []
        for c, per in zip(self.coords, self.periodic):
            span = float(c[-1] - c[0])
            out.append(span * c.size / (c.size - 1) if per else span)
        return tuple(out)

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        """``(low, high)`` per axis of the physical domain."""
        return tuple((float(c[0]), float(c[0]) + L) for c, L in zip(self.coords, self.lengths))

    @property
    def cell_volume(self) -> float:
        """Product of the spacings: the quadrature weight of one node."""
        return float(np.prod(self.spacing))

    # ------------------------------------------------------------------ methods
    def with_shape(self, shape: int | Sequence[int]) -> Grid:
        """A regular grid on the same domain with another number of nodes per axis."""
        shape = (shape,) * self.ndim if isinstance(shape, int) else tuple(shape)
        if len(shape) != self.ndim:
            raise ValueError(f"shape {shape} has {len(shape)} axes, the grid has {self.ndim}")
        return Grid.regular(
            shape,
            lengths=self.lengths,
            periodic=self.periodic,
            origin=[c[0] for c in self.coords],
            axes=self.axes,
            units=self.units,
        )

    def mesh(self, dtype=torch.float32, device=None) -> torch.Tensor:
        """Node coordinates as a tensor of shape ``(ndim, *shape)``."""
        axes = [torch.tensor(c, dtype=dtype, device=device) for c in self.coords]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"))

    def xarray_coords(self) -> dict:
        """Coordinates for xarray: ``{axis: (axis, values, attrs)}`` with CF attributes."""
        cf_axis = {1: ["X"], 2: ["Y", "X"], 3: ["Z", "Y", "X"]}[self.ndim]
        out = {}
        for name, c, per, unit, letter in zip(
            self.axes, self.coords, self.periodic, self.units, cf_axis
        ):
            attrs = {"axis": letter, "periodic": int(per)}
            if unit:
                attrs["units"] = unit
            out[name] = (name, c, attrs)
        return out

    def check_points(self, points: np.ndarray) -> None:
        """Raise a ``ValueError`` naming the first point of ``(S, ndim)`` outside the domain."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != self.ndim:
            raise ValueError(
                f"points must have shape (count, {self.ndim}) for axes {self.axes}, "
                f"got {points.shape}"
            )
        low = np.array([b[0] for b in self.bounds])
        high = np.array([b[1] for b in self.bounds])
        tol = 1e-9 * (high - low)
        outside = np.any((points < low - tol) | (points > high + tol), axis=1)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            where = ", ".join(f"{p:.4g}" for p in points[i])
            domain = ", ".join(
                f"{a}\u2208[{lo:.4g}, {hi:.4g}]" for a, (lo, hi) in zip(self.axes, self.bounds)
            )
            raise ValueError(f"sensor {i} at ({where}) lies outside the grid {domain}")

    def same_domain(self, other: Grid) -> bool:
        """True where both grids cover the same domain with the same axes and periodicity."""
        return (
            self.axes == other.axes
            and self.periodic == other.periodic
            and np.allclose(
                [b for pair in self.bounds for b in pair],
                [b for pair in other.bounds for b in pair],
                rtol=1e-9,
                atol=1e-12,
            )
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return (
            self.axes == other.axes
            and self.periodic == other.periodic
            and self.shape == other.shape
            and all(
                np.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(self.coords, other.coords)
            )
        )

    def __hash__(self) -> int:
        return hash(
            (self.axes, self.periodic, self.shape, tuple(float(c[0]) for c in self.coords))
        )

    def __repr__(self) -> str:
        parts = [
            f"{a}: {n} nodes on [{lo:.4g}, {hi:.4g}]{' periodic' if p else ''}"
            for a, n, (lo, hi), p in zip(self.axes, self.shape, self.bounds, self.periodic)
        ]
        return f"Grid({'; '.join(parts)})"

    def to_dict(self) -> dict:
        """A JSON-serialisable description (regular grids only store shape and bounds)."""
        return {
            "axes": list(self.axes),
            "coords": [c.tolist() for c in self.coords],
            "periodic": list(self.periodic),
            "units": list(self.units),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Grid:
        """Inverse of :meth:`to_dict`."""
        return cls(
            data["coords"], axes=data["axes"], periodic=data["periodic"], units=data["units"]
        )


def resample(field: torch.Tensor, source: Grid, target: Grid) -> torch.Tensor:
    """Resample ``field`` of shape ``(..., *source.shape)`` onto ``target``.

    Spectral (trigonometric interpolation) along periodic axes, linear along bounded axes.
    Both grids must cover the same domain.

    Returns
    -------
    torch.Tensor of shape ``(..., *target.shape)``.
    """
    field = torch.as_tensor(field)
    if tuple(field.shape[-source.ndim :]) != source.shape:
        raise ValueError(
            f"field of shape {tuple(field.shape)} does not end with the source grid's "
            f"shape {source.shape}"
        )
    if source.ndim != target.ndim:
        raise ValueError(
            f"cannot resample a {source.ndim}-D field onto a {target.ndim}-D grid; "
            "pass a target grid with the same axes"
        )
    if not source.same_domain(target):
        raise ValueError(
            f"source {source} and target {target} cover different domains; "
            "resampling needs the same axes, periodicity and bounds"
        )
    out = field
    for axis in range(source.ndim):
        dim = out.ndim - source.ndim + axis
        if source.periodic[axis]:
            out = _resample_spectral(out, dim, target.shape[axis])
        else:
            out = _resample_linear(out, dim, source.coords[axis], target.coords[axis])
    return out


def _resample_spectral(x: torch.Tensor, dim: int, m: int) -> torch.Tensor:
    """Trigonometric interpolation of ``x`` along ``dim`` from ``n`` to ``m`` nodes."""
    n = x.shape[dim]
    if n == m:
        return x
    spec = torch.fft.fft(x.to(torch.promote_types(x.dtype, torch.float32)), dim=dim)
    k = min(n, m)
    half = (k - 1) // 2  # strictly positive frequencies kept on both sides
    shape = list(x.shape)
    shape[dim] = m
    out = torch.zeros(shape, dtype=spec.dtype, device=x.device)
    idx = lambda s: (slice(None),) * dim + (s,)  # noqa: E731
    out[idx(slice(0, half + 1))] = spec[idx(slice(0, half + 1))]
    if half > 0:
        out[idx(slice(m - half, m))] = spec[idx(slice(n - half, n))]
    if k % 2 == 0:  # the Nyquist frequency of the smaller grid
        nyq = k // 2
        if m < n:  # fold +/- Nyquist of the fine grid into one bin
            out[idx(slice(nyq, nyq + 1))] = (
                spec[idx(slice(nyq, nyq + 1))] + spec[idx(slice(n - nyq, n - nyq + 1))]
            )
        else:  # split the coarse Nyquist bin evenly between +/- Nyquist
            out[idx(slice(nyq, nyq + 1))] = 0.5 * spec[idx(slice(nyq, nyq + 1))]
            out[idx(slice(m - nyq, m - nyq + 1))] = 0.5 * spec[idx(slice(nyq, nyq + 1))]
    return (torch.fft.ifft(out, dim=dim) * (m / n)).real.to(x.dtype)


def _resample_linear(x: torch.Tensor, dim: int, src: np.ndarray, dst: np.ndarray) -> torch.Tensor:
    """Linear interpolation of ``x`` along ``dim`` from nodes ``src`` to nodes ``dst``."""
    if src.size == dst.size and np.allclose(src, dst):
        return x
    pos = np.clip(np.interp(dst, src, np.arange(src.size)), 0, src.size - 1)
    left = np.minimum(np.floor(pos).astype(np.int64), src.size - 2)
    weight = torch.as_tensor(pos - left, dtype=x.dtype, device=x.device)
    left_t = torch.as_tensor(left, device=x.device)
    a = torch.index_select(x, dim, left_t)
    b = torch.index_select(x, dim, left_t + 1)
    shape = [1] * x.ndim
    shape[dim] = -1
    weight = weight.reshape(shape)
    return a * (1 - weight) + b * weight


def _uniform(c: np.ndarray) -> bool:
    """Constant spacing, up to the rounding of coordinates stored as float32 in files."""
    d = np.diff(c)
    float32_rounding = 4 * np.finfo(np.float32).eps * float(np.abs(c).max())
    return bool(np.allclose(d, d.mean(), rtol=_UNIFORM_RTOL, atol=float32_rounding))


def _is_periodic(name: str, values: np.ndarray, attrs: Mapping) -> bool:
    if "periodic" in attrs:
        return bool(int(attrs["periodic"]))
    is_lon = (
        name in ("lon", "longitude")
        or attrs.get("standard_name") == "longitude"
        or str(attrs.get("units", "")).lower() in _LONGITUDE_UNITS
    )
    if is_lon and values.size > 2 and _uniform(values):
        step = (values[-1] - values[0]) / (values.size - 1)
        return bool(np.isclose(step * values.size, 360.0, rtol=1e-5))
    return False


def _per_axis(value, ndim: int, name: str, kind):
    if isinstance(value, (str, bool, int, float, np.number)) or value is None:
        return (kind(value if value is not None else ""),) * ndim
    values = tuple(kind(v) for v in value)
    if len(values) != ndim:
        raise ValueError(f"{name} has {len(values)} entries for a {ndim}-D grid")
    return values
