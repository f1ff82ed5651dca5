"""FieldDataset: an ``xarray.Dataset`` with a known layout, and its tensor views.

Layout (the contract of ``docs/fields.md``): dims ``sample`` (independent realisations,
optional), ``time`` (optional), spatial dims last in CF order (``z, y, x`` or
``lat, lon``). Each *field variable* spans every spatial dim; other variables (CF bounds,
scalars) ride along untouched. Spatial dims are recognised by the CF ``axis`` or
``standard_name`` attribute of their coordinate, or by the usual names.

On the torch side a batch is ``(B, C, *spatial)`` or ``(B, T, C, *spatial)``: channels are
the variables in the order asked for. NaN ("no data here") becomes 0 in
:meth:`FieldDataset.to_tensor`, and :meth:`FieldDataset.mask` says where it was.

Spatial coordinates stored in decreasing order (latitude north to south, as in most
reanalyses) are read in increasing order, so every grid and tensor runs from low to high
coordinates; :meth:`FieldDataset.save` and :meth:`FieldDataset.from_tensor` with ``like=``
write them back in the file's order. :meth:`FieldDataset.layout` keeps what an output
needs to look like its input: coordinates (dtype, attributes, encoding), CF bounds,
global and variable attributes, encodings, and the land mask.

Data larger than memory: :meth:`FieldDataset.open` with ``chunks`` (or any file whose
fields exceed :data:`~sciml_diffusion.fields.io.LAZY_BYTES`) keeps every variable as a
dask array on disk. Everything above stays lazy (the flip of decreasing axes, selections,
splits, :meth:`FieldDataset.layout` and :meth:`FieldDataset.describe`, which reduce chunk
by chunk); only :meth:`to_tensor`, :meth:`mask` and :meth:`to_numpy` read values, so read
a batch with ``dataset.isel(sample=rows).to_tensor()`` or through
:mod:`sciml_diffusion.fields.batches`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from sciml_diffusion.fields.grid import Grid

__all__ = ["FieldDataset", "spatial_dims", "describe_dataset", "LEADING_DIMS"]

#: dims allowed before the spatial ones in a tensor view, in this order
LEADING_DIMS = ("sample", "time")

_NAME_AXIS = {
    "x": "X",
    "lon": "X",
    "longitude": "X",
    "y": "Y",
    "lat": "Y",
    "latitude": "Y",
    "z": "Z",
    "lev": "Z",
    "level": "Z",
    "depth": "Z",
    "height": "Z",
}
_STANDARD_NAME_AXIS = {
    "longitude": "X",
    "grid_longitude": "X",
    "projection_x_coordinate": "X",
    "latitude": "Y",
    "grid_latitude": "Y",
    "projection_y_coordinate": "Y",
    "altitude": "Z",
    "height": "Z",
    "depth": "Z",
    "air_pressure": "Z",
    "model_level_number": "Z",
}
_CF_ORDER = {"Z": 0, "Y": 1, "X": 2}
#: global attribute recording the field variable order (some stores, e.g. Zarr, lose it)
_ORDER_ATTR = "field_variables"


def _axis_letter(obj, dim: str) -> str | None:
    attrs = obj[dim].attrs if dim in obj.coords else {}
    letter = str(attrs.get("axis", "")).upper()
    if letter in _CF_ORDER:
        return letter
    if letter == "T":
        return None
    standard = _STANDARD_NAME_AXIS.get(str(attrs.get("standard_name", "")).lower())
    return standard or _NAME_AXIS.get(str(dim).lower())


def spatial_dims(obj) -> tuple[str, ...]:
    """Names of the spatial dims of an xarray object, in CF order (``z, y, x``).

    Raises
    ------
    ValueError
        If no dim can be identified as spatial, naming the dims found.
    """
    found: dict[str, str] = {}
    for dim in obj.dims:
        letter = _axis_letter(obj, dim)
        if letter is None:
            continue
        if letter in found.values():
            other = next(d for d, v in found.items() if v == letter)
            raise ValueError(
                f"dims {other!r} and {dim!r} both look like the {letter} axis; "
                "set the CF 'axis' attribute on one coordinate to disambiguate"
            )
        found[dim] = letter
    if not found:
        raise ValueError(
            f"cannot identify spatial dims among {list(obj.dims)}; name them x, y, z, lat, "
            "lon (or latitude/longitude), or give their coordinates a CF 'axis' attribute "
            "(X, Y or Z)"
        )
    return tuple(sorted(found, key=lambda d: _CF_ORDER[found[d]]))


class FieldDataset:
    """A field data set: an ``xarray.Dataset`` in the layout of DESIGN.md.

    Parameters
    ----------
    dataset : xarray.Dataset
        The data. Field variables are transposed to ``(sample, time, ..., *spatial)``.
    variables : sequence of str, optional
        Field variables to keep (default: every variable spanning the spatial dims).

    Examples
    --------
    >>> ds = FieldDataset.open("darcy.nc", variables=["a", "u"])  # doctest: +SKIP
    >>> x = ds.to_tensor()          # (B, 2, ny, nx), NaN -> 0
    >>> m = ds.mask()               # same shape, False where the file had NaN
    """

    def __init__(
        self,
        dataset: xr.Dataset,
        variables: Sequence[str] | None = None,
        decreasing: Sequence[str] = (),
    ):
        if isinstance(dataset, FieldDataset):
            decreasing = tuple(decreasing) or dataset._flipped
            dataset = dataset.xarray
        if not isinstance(dataset, xr.Dataset):
            raise ValueError(f"FieldDataset wraps an xarray.Dataset, got {type(dataset).__name__}")
        self._spatial = spatial_dims(dataset)
        dataset, flipped = _increasing(dataset, self._spatial)
        self._flipped = tuple(d for d in self._spatial if d in flipped or d in decreasing)
        fields = [v for v in dataset.data_vars if set(self._spatial) <= set(dataset[v].dims)]
        fields = _stored_order(fields, dataset.attrs.get(_ORDER_ATTR))
        if variables is not None:
            variables = _as_list(variables)
            _check_variables(variables, fields)
            dataset = dataset.drop_vars([v for v in fields if v not in variables])
            fields = list(variables)
        if not fields:
            raise ValueError(
                f"no variable spans the spatial dims {self._spatial}; "
                f"found {list(dataset.data_vars)}"
            )
        for v in fields:
            dataset[v] = _canonical(dataset[v], self._spatial)
        self._ds = dataset
        self._variables = tuple(fields)

    # ------------------------------------------------------------------ files
    @classmethod
    def open(
        cls,
        path: str | os.PathLike | Sequence[str | os.PathLike],
        variables: Sequence[str] | None = None,
        chunks=None,
    ) -> FieldDataset:
        """Open NetCDF (.nc), HDF5 (NetCDF4 or PDEBench layout), Zarr (.zarr) or many files.

        Parameters
        ----------
        path : path, glob pattern or list of paths
            Several NetCDF files are joined with ``xarray.open_mfdataset`` (lazily).
        variables : sequence of str, optional
            Field variables to keep.
        chunks : None, False, "auto", int or dict
            Read lazily with dask, chunked along ``sample``/``time`` (an int: that many per
            chunk). ``None`` (default) does so only when the fields exceed
            :data:`~sciml_diffusion.fields.io.LAZY_BYTES`; ``False`` never. See
            :func:`~sciml_diffusion.fields.io.open_dataset`.
        """
        from sciml_diffusion.fields.io import open_dataset

        return cls(open_dataset(path, chunks=chunks), variables=variables)

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path`` atomically (format from the suffix: .nc, .h5/.hdf5, .zarr).

        Axes read in decreasing order are written back in decreasing order.
        """
        from sciml_diffusion.fields.io import save_dataset

        ds = self.file_order()
        ds.attrs[_ORDER_ATTR] = ",".join(self._variables)
        save_dataset(ds, path)

    def file_order(self) -> xr.Dataset:
        """The ``xarray.Dataset`` with every axis in the order of the file it came from."""
        flips = {d: slice(None, None, -1) for d in self._flipped if d in self._ds.dims}
        return self._ds.isel(flips) if flips else self._ds.copy()

    # ------------------------------------------------------------------ layout
    @property
    def xarray(self) -> xr.Dataset:
        """The underlying ``xarray.Dataset``."""
        return self._ds

    @property
    def variables(self) -> tuple[str, ...]:
        """Names of the field variables, in dataset order."""
        return self._variables

    @property
    def spatial_dims(self) -> tuple[str, ...]:
        """Spatial dim names in CF order."""
        return self._spatial

    @property
    def grid(self) -> Grid:
        """The :class:`Grid` of the spatial dims."""
        return Grid.from_xarray(self._ds, axes=self._spatial)

    @property
    def is_lazy(self) -> bool:
        """Whether the field variables are dask arrays, read from disk only when used."""
        return any(self._ds[v].chunks is not None for v in self._variables)

    @property
    def has_time(self) -> bool:
        """Whether field variables carry a ``time`` dim."""
        return any("time" in self._ds[v].dims for v in self._variables)

    def __len__(self) -> int:
        return int(self._ds.sizes.get("sample", 1))

    def __repr__(self) -> str:
        return f"FieldDataset(variables={list(self._variables)}, samples={len(self)}, {self.grid})"

    @property
    def decreasing(self) -> tuple[str, ...]:
        """Spatial dims the file stores in decreasing order (read here in increasing order)."""
        return self._flipped

    def isel(self, **indexers) -> FieldDataset:
        """Index along dims (``sample=...``, ``time=...``) as ``xarray.Dataset.isel``."""
        return FieldDataset(
            self._ds.isel(**indexers), variables=self._variables, decreasing=self._flipped
        )

    def stack_samples(self, dim: str) -> FieldDataset:
        """Treat ``dim`` (e.g. ``"time"``: one field per time) as independent samples.

        Without a ``sample`` dim, ``dim`` is renamed ``sample``; with one, the two are
        stacked into ``sample`` (sample-major). Variables along ``dim`` (e.g. ``time_bnds``)
        follow; the coordinate of ``dim`` is kept as a non-index coordinate.
        """
        ds = self._ds
        if dim == "sample":
            return self
        if dim not in ds.dims:
            raise ValueError(
                f"--sample-dim {dim!r} is not a dim of the data; dims are {list(ds.dims)}"
            )
        if dim in self._spatial:
            raise ValueError(f"{dim!r} is a spatial dim; choose time or another leading dim")
        if "sample" in ds.dims:
            ds = ds.stack(_sample=("sample", dim)).reset_index("_sample", drop=True)
            ds = ds.drop_vars(["sample", dim], errors="ignore").rename({"_sample": "sample"})
        else:
            if dim in ds.indexes:
                ds = ds.reset_index(dim)
            ds = ds.rename_dims({dim: "sample"})
        ds = ds.transpose("sample", ...)
        return FieldDataset(ds, variables=self._variables, decreasing=self._flipped)

    def layout(self, variables: Sequence[str] | None = None) -> FieldDataset:
        """What outputs need to look like this data set: one field per variable, no samples.

        Each variable is 0 where any sample has data and NaN where every sample (and time)
        is NaN (land); it keeps its attributes and encoding (dtype, packing, fill value).
        Spatial coordinates, CF bounds and other variables without ``sample``/``time`` dims
        and the global attributes are kept. Pass it as ``like=`` to :meth:`from_tensor`.
        """
        variables = self._select(variables)
        ds = self._ds
        keep = {}
        for name, var in ds.data_vars.items():
            if name in self._variables and name not in variables:
                continue
            if name in variables:
                reduce = [d for d in var.dims if d not in self._spatial]
                land = var.isnull().all(reduce) if reduce else var.isnull()
                field = xr.zeros_like(land, dtype=np.float64).where(~land)
                field.attrs, field.encoding = dict(var.attrs), _portable_encoding(var.encoding)
                keep[name] = field
            elif not set(var.dims) & {*LEADING_DIMS, *_leading_extra(ds, self._spatial)}:
                keep[name] = var
        out = xr.Dataset(keep, attrs=dict(ds.attrs))
        for dim in self._spatial:
            if dim in ds.coords:
                out = out.assign_coords({dim: ds[dim]})
        out = out.drop_vars([c for c in out.coords if set(out[c].dims) - set(self._spatial)])
        return FieldDataset(out.load(), variables=variables, decreasing=self._flipped)

    # ------------------------------------------------------------------ tensors
    def to_tensor(
        self, variables: Sequence[str] | None = None, dtype=torch.float32, device=None
    ) -> torch.Tensor:
        """Fields as ``(B, C, *spatial)`` or ``(B, T, C, *spatial)``, NaN replaced by 0.

        ``B = 1`` where the data set has no ``sample`` dim.
        """
        values = self._stacked(variables)
        return torch.as_tensor(np.nan_to_num(values, nan=0.0), dtype=dtype, device=device)

    def mask(self, variables: Sequence[str] | None = None, device=None) -> torch.Tensor:
        """Bool tensor shaped like :meth:`to_tensor`: True where data exist (not NaN)."""
        return torch.as_tensor(~np.isnan(self._stacked(variables)), device=device)

    def to_numpy(self, variables: Sequence[str] | None = None) -> np.ndarray:
        """float64 values shaped like :meth:`to_tensor`, NaN kept (one read of the data)."""
        return self._stacked(variables)

    def _stacked(self, variables) -> np.ndarray:
        variables = self._select(variables)
        leading = self._leading_dims(variables)
        arrays = []
        for v in variables:
            arr = self._ds[v]
            missing = [d for d in leading if d not in arr.dims]
            if missing:
                raise ValueError(
                    f"variable {v!r} lacks dims {missing} that {list(variables)} share; "
                    "ask for variables with the same dims, or broadcast it first"
                )
            arrays.append(np.asarray(arr.transpose(*leading, *self._spatial).values, np.float64))
        out = np.stack(arrays, axis=len(leading))
        return out if "sample" in leading else out[None]

    def _leading_dims(self, variables) -> list[str]:
        dims = set()
        for v in variables:
            extra = [d for d in self._ds[v].dims if d not in (*LEADING_DIMS, *self._spatial)]
            if extra:
                raise ValueError(
                    f"variable {v!r} has dims {extra} beyond sample/time/space; select them "
                    f"first, e.g. dataset.isel({extra[0]}=0)"
                )
            dims.update(self._ds[v].dims)
        return [d for d in LEADING_DIMS if d in dims]

    def _select(self, variables) -> list[str]:
        if variables is None:
            return list(self._variables)
        variables = _as_list(variables)
        _check_variables(variables, self._variables)
        return variables

    @classmethod
    def from_tensor(
        cls,
        tensor: torch.Tensor,
        variables: Sequence[str] | None = None,
        grid: Grid | None = None,
        like: FieldDataset | None = None,
        time: Sequence | np.ndarray | None = None,
        attrs: dict | None = None,
    ) -> FieldDataset:
        """Build a data set from ``(B, C, *spatial)`` or ``(B, T, C, *spatial)``.

        Coordinates come from ``grid`` (default ``like.grid``); variable names and
        attributes, the sample and time coordinates and the global attributes are taken
        from ``like`` where they fit. With ``like`` (a data set or its :meth:`layout`) the
        output also keeps its encodings (packing, fill value) and its land: NaN where
        every sample of ``like`` is NaN. On ``like``'s own grid it keeps the coordinate
        variables themselves (dtype, attributes, order on disk) and the CF bounds; on
        another grid of the same domain the coordinate attributes, and the land mask is
        moved onto the new grid. Values that float32 would turn into infinities stay float64.
        """
        grid = grid if grid is not None else (like.grid if like is not None else None)
        if grid is None:
            raise ValueError("pass grid= (or like=) so the field gets physical coordinates")
        variables = _as_list(variables) if variables is not None else None
        if variables is None and like is not None:
            variables = list(like.variables)
        values = torch.as_tensor(tensor).detach().to("cpu", torch.float64).numpy()
        lead = values.ndim - grid.ndim - 1
        if lead not in (1, 2) or values.shape[-grid.ndim :] != grid.shape:
            raise ValueError(
                f"tensor of shape {values.shape} is not (B, C, *{grid.shape}) or "
                f"(B, T, C, *{grid.shape})"
            )
        if variables is None or len(variables) != values.shape[lead]:
            raise ValueError(
                f"tensor has {values.shape[lead]} channels but variables={variables}; "
                "name one variable per channel"
            )
        dims = ("sample", "time")[:lead]
        coords = dict(grid.xarray_coords())
        coords["sample"] = _leading_coord(like, "sample", values.shape[0])
        if lead == 2:
            coords["time"] = _time_coord(like, time, values.shape[1])
        data = {}
        for c, name in enumerate(variables):
            data[name] = ((*dims, *grid.axes), _float32_if_it_fits(np.take(values, c, axis=lead)))
        ds = xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))
        if like is None:
            return cls(ds)
        return cls(_like(ds, like, grid, variables), decreasing=like.decreasing)

    # ------------------------------------------------------------------ splits
    def split(self, fractions: Sequence[float], seed: int = 0) -> list[FieldDataset]:
        """Random disjoint splits along ``sample`` with the given fractions (sum <= 1)."""
        fractions = [float(f) for f in fractions]
        if any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
            raise ValueError(f"fractions must be >= 0 and sum to at most 1, got {fractions}")
        if "sample" not in self._ds.dims:
            raise ValueError("this data set has no 'sample' dim to split along")
        n = self._ds.sizes["sample"]
        order = np.random.default_rng(seed).permutation(n)
        edges = np.round(np.cumsum([0.0, *fractions]) * n).astype(int)
        return [self.isel(sample=np.sort(order[a:b])) for a, b in zip(edges[:-1], edges[1:])]

    # ------------------------------------------------------------------ summary
    def describe(self) -> str:
        """A human-readable summary: dims, grid, variables, NaN fraction, value ranges."""
        lines = [f"grid: {self.grid}"]
        flipped = [d for d in self._spatial if d in self._flipped]
        if flipped:
            lines.append(f"stored decreasing (read in increasing order): {', '.join(flipped)}")
        return describe_dataset(self._ds, self._variables, extra=lines)


def describe_dataset(ds: xr.Dataset, variables=None, extra=()) -> str:
    """Summary of any data set (fields, time series, tables): dims, time, variables.

    One line per variable with its dims, units, NaN fraction and range.
    """
    variables = list(variables) if variables is not None else list(ds.data_vars)
    _check_variables(variables, list(ds.data_vars))
    lines = [f"dims: {', '.join(f'{d}={n}' for d, n in ds.sizes.items())}", *extra]
    if "time" in ds.coords and ds["time"].size:
        t = ds["time"].values
        calendar = ds["time"].encoding.get("calendar") or ds["time"].attrs.get("calendar")
        note = f" ({calendar} calendar)" if calendar else ""
        lines.append(f"time: {t.size} steps from {t.min()} to {t.max()}{note}")
    lines.append("variables:")
    for v in variables:
        lines.append(f"  {v}{_variable_summary(ds[v])}")
    return "\n".join(lines)


def _variable_summary(arr: xr.DataArray) -> str:
    """Units, dims, NaN fraction and range; xarray reductions, so lazy data stream."""
    units = arr.attrs.get("units", "")
    unit = f" [{units}]" if units else ""
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        return f"{unit} dims={list(arr.dims)} dtype={arr.dtype}"
    if arr.size == 0:
        return f"{unit} dims={list(arr.dims)} empty"
    values = arr.variable.astype(np.float64)
    stats = xr.Dataset(
        {
            "nan": values.isnull().mean(),
            "min": values.min(),
            "max": values.max(),
            "mean": values.mean(),
            "std": values.std(),
        }
    ).compute()
    nan = float(stats["nan"])
    if nan < 1:
        lo, hi, mean, std = (float(stats[k]) for k in ("min", "max", "mean", "std"))
        stats = f"min={lo:.4g} max={hi:.4g} mean={mean:.4g} std={std:.4g}"
    else:
        stats = "all NaN"
    return f"{unit} dims={list(arr.dims)} nan={nan:.2%} {stats}"


#: encoding keys that describe how a variable is stored, valid for any NetCDF4 writer
_ENCODING_KEYS = (
    "dtype", "scale_factor", "add_offset", "_FillValue", "units", "calendar", "zlib",
    "complevel", "shuffle",
)  # fmt: skip


def _portable_encoding(encoding: dict) -> dict:
    return {k: v for k, v in encoding.items() if k in _ENCODING_KEYS}


def _leading_extra(ds: xr.Dataset, spatial) -> list[str]:
    """Dims of field variables besides the spatial ones (sample, time, member, ...)."""
    dims = set()
    for var in ds.data_vars.values():
        if set(spatial) <= set(var.dims):
            dims.update(d for d in var.dims if d not in spatial)
    return sorted(dims)


def _increasing(ds: xr.Dataset, spatial) -> tuple[xr.Dataset, tuple[str, ...]]:
    """``ds`` with every decreasing spatial coordinate reversed, and the reversed dims."""
    flipped = []
    for dim in spatial:
        if dim not in ds.coords or ds.sizes[dim] < 2:
            continue
        values = np.asarray(ds[dim].values, dtype=np.float64)
        steps = np.diff(values)
        if np.all(steps > 0):
            continue
        if np.all(steps < 0):
            flipped.append(dim)
            continue
        raise ValueError(
            f"coordinate {dim!r} is neither increasing nor decreasing; sort it first, "
            f"e.g. dataset.sortby({dim!r})"
        )
    if flipped:
        ds = ds.isel({d: slice(None, None, -1) for d in flipped})
    return ds, tuple(flipped)


def _float32_if_it_fits(values: np.ndarray) -> np.ndarray:
    """float32, unless that turns finite values into infinities (data near 1e38)."""
    single = values.astype(np.float32)
    if np.isfinite(single).sum() == np.isfinite(values).sum():
        return single
    return values


def _like(ds: xr.Dataset, like: FieldDataset, grid: Grid, variables) -> xr.Dataset:
    """``ds`` given ``like``'s coordinates, attributes, encodings, bounds and land mask."""
    template = like.xarray
    same_grid = grid == like.grid
    for dim in grid.axes:
        if dim not in template.coords:
            continue
        if same_grid:
            ds = ds.assign_coords({dim: template[dim].variable})
        else:  # another resolution: the file's description of the axis, new values
            attrs = {k: v for k, v in template[dim].attrs.items() if k != "bounds"}
            ds[dim].attrs = {**attrs, **ds[dim].attrs}
            dtype = template[dim].dtype
            if np.issubdtype(dtype, np.floating):
                ds = ds.assign_coords({dim: ds[dim].astype(dtype)})
    if same_grid:  # CF bounds and other variables of the grid ride along
        leading = {*LEADING_DIMS, *_leading_extra(template, grid.axes)}
        extra = {
            n: v
            for n, v in template.data_vars.items()
            if n not in ds and n not in like.variables and not set(v.dims) & leading
        }
        ds = ds.assign(extra)
    for name in variables:
        if name not in template:
            continue
        ds[name] = ds[name].where(_valid(template[name], grid, like.grid, same_grid))
        ds[name].attrs = dict(template[name].attrs)
        ds[name].encoding = _portable_encoding(template[name].encoding)
    ds.attrs = {**template.attrs, **ds.attrs}
    return ds


def _valid(field: xr.DataArray, grid: Grid, source: Grid, same_grid: bool) -> xr.DataArray:
    """Where ``like`` had data in some sample (True), on ``grid``."""
    spatial = list(grid.axes)
    reduce = [d for d in field.dims if d not in spatial]
    has_data = field.notnull().any(reduce) if reduce else field.notnull()
    if same_grid:
        return has_data.drop_vars(spatial, errors="ignore")
    from sciml_diffusion.fields.grid import resample

    moved = resample(torch.as_tensor(has_data.transpose(*spatial).values, dtype=torch.float64),
                     source, grid)  # fmt: skip
    return xr.DataArray(moved.numpy() > 0.5, dims=spatial)


def _canonical(arr: xr.DataArray, spatial: tuple[str, ...]) -> xr.DataArray:
    leading = [d for d in LEADING_DIMS if d in arr.dims]
    middle = [d for d in arr.dims if d not in leading and d not in spatial]
    return arr.transpose(*leading, *middle, *spatial)


def _leading_coord(like, dim: str, size: int):
    if like is not None and dim in like.xarray.coords and like.xarray.sizes.get(dim) == size:
        return (dim, like.xarray[dim].values, dict(like.xarray[dim].attrs))
    return (dim, np.arange(size))


def _time_coord(like, time, size: int):
    if time is not None:
        time = np.asarray(time)
        if time.shape != (size,):
            raise ValueError(f"time has shape {time.shape}, the tensor has {size} time steps")
        return ("time", time)
    return _leading_coord(like, "time", size)


def _stored_order(fields: list[str], stored) -> list[str]:
    """``fields`` in the order recorded at save time, where that names the same set."""
    order = str(stored).split(",") if stored else []
    return order if sorted(order) == sorted(fields) else fields


def _as_list(variables) -> list[str]:
    return [variables] if isinstance(variables, str) else list(variables)


def _check_variables(requested: Sequence[str], available: Sequence[str]) -> None:
    missing = [v for v in requested if v not in available]
    if missing:
        raise ValueError(
            f"variable(s) {missing} not in the data set; available field variables: "
            f"{list(available)}"
        )
