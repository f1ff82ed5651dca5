"""Reading and writing field data sets: NetCDF (h5netcdf), HDF5 (PDEBench layout), Zarr.

- ``.nc`` / ``.nc4`` / ``.h5`` / ``.hdf5`` written by this package or any NetCDF4 tool
  open through xarray's ``h5netcdf`` engine; classic NetCDF3 files through ``scipy``.
- HDF5 files in the PDEBench layout (flat arrays ``tensor``, ``nu``, ``density``, ... with
  ``x-coordinate``, ``y-coordinate``, ``t-coordinate``; or one group per sample holding
  ``data`` and ``grid/x``, ``grid/t``) are read with h5py, and their anonymous ("phony")
  dims get the names ``sample, time, x, y, z``.
- ``.zarr`` stores need the ``zarr`` extra (``pip install "sciml-diffusion[zarr]"``).
- Several NetCDF files (a list, or a glob such as ``"era5_*.nc"``) open as one data set
  through ``xarray.open_mfdataset``, joined along their ``time`` (or ``sample``) axis.
- Data larger than memory stay on disk: with ``chunks`` (or when the field variables
  exceed :data:`LAZY_BYTES` once decoded) every variable is a dask array chunked along its
  leading ``sample``/``time`` dim and whole along space, and is read chunk by chunk when
  asked for (:mod:`sciml_diffusion.fields.batches`).
- CF conventions are decoded by xarray: packed variables (``scale_factor``/``add_offset``,
  ``_FillValue``) become floats with NaN, and time axes in any CF calendar or with early
  origins (``hours since 1-1-1``) become ``cftime`` dates. Their encodings (packing,
  calendar, units) are kept and used again on write; a packed variable whose new values
  do not fit its packing is written as float32 instead (with a warning), never wrapped.
- A damaged file (cut short, or not NetCDF/HDF5) is a one-line ``ValueError``.

Every write goes to a temporary file beside the target and is renamed into place, so an
interrupted save never leaves a half-written file under the final name.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

__all__ = ["open_dataset", "save_dataset", "atomic_path", "LAZY_BYTES", "is_lazy"]

#: decoded size (bytes) of the field data above which ``open_dataset`` reads lazily with dask
LAZY_BYTES = 2**30
#: dims along which lazy data are chunked (space is kept whole in each chunk)
_LEADING = ("sample", "time")

_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_ZARR_SUFFIXES = (".zarr",)
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: xarray/cftime notes on valid CF time axes (early origins, non-standard calendars)
_DECODING_NOTES = (
    "Ambiguous reference date",
    "Unable to decode time axis",
    "this date/calendar/year zero convention",
)
_PDEBENCH_COORDS = {"x-coordinate": "x", "y-coordinate": "y", "z-coordinate": "z"}


def open_dataset(path, chunks=None) -> xr.Dataset:
    """Open a field file as an ``xarray.Dataset`` (format from suffix and magic bytes).

    Parameters
    ----------
    path : path, glob or list of paths
        A NetCDF/HDF5 file, a ``.zarr`` store, or several NetCDF files (a list, or a glob
        pattern like ``"data/era5_*.nc"``) joined by ``xarray.open_mfdataset`` along
        ``time`` (by their time coordinates) or else ``sample`` (in sorted path order).
    chunks : None, False, "auto", int or dict
        ``None``: lazy (dask) when the decoded field data exceed :data:`LAZY_BYTES`, read
        as usual otherwise; ``False``: never dask; ``"auto"``: dask chunks of about
        dask's ``array.chunk-size`` along ``sample``/``time``, whole along space; an int:
        that many samples (or time steps) per chunk; a dict: xarray's ``chunks``.
        Several files are always lazy.
    """
    paths = _expand(path)
    if len(paths) > 1 or not isinstance(path, (str, os.PathLike)) or _is_glob(path):
        return _open_many(paths, chunks)
    path = paths[0]
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in _ZARR_SUFFIXES or (path.is_dir() and (path / ".zgroup").exists()):
        return _open_zarr(path, chunks)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a NetCDF/HDF5 file or a .zarr store")
    with open(path, "rb") as handle:
        magic = handle.read(8)
    if magic[:3] == b"CDF":
        ds = _damaged_is_value_error(path, lambda: xr.open_dataset(path, engine="scipy"))
        return _maybe_chunk(ds, chunks)
    if magic == _HDF5_MAGIC:
        return _maybe_chunk(_damaged_is_value_error(path, lambda: _open_hdf5(path)), chunks)
    raise ValueError(
        f"cannot read {path}: the file is damaged or not NetCDF/HDF5/Zarr (known suffixes: "
        f"{', '.join(_NETCDF_SUFFIXES + _HDF5_SUFFIXES + _ZARR_SUFFIXES)})"
    )


def is_lazy(ds: xr.Dataset) -> bool:
    """Whether any data variable of ``ds`` is a dask array (read from disk when used)."""
    return any(var.chunks is not None for var in ds.data_vars.values())


def _is_glob(path) -> bool:
    """A pattern such as ``era5_*.nc`` (a file of that very name is a file)."""
    return any(c in str(path) for c in "*?[") and not Path(path).exists()


def _expand(path) -> list[Path]:
    """The files named by a path, a glob pattern or a list of them, in sorted order."""
    items = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not items:
        raise ValueError("no files given; pass a path, a glob pattern or a list of paths")
    paths = []
    for item in items:
        if _is_glob(item):
            found = sorted(glob.glob(str(item)))
            if not found:
                raise FileNotFoundError(f"no file matches {item}")
            paths.extend(Path(p) for p in found)
        else:
            paths.append(Path(item))
    return paths


def _chunking(ds: xr.Dataset, chunks) -> dict | None:
    """xarray ``chunks`` for ``ds`` (``None``: read without dask)."""
    if chunks is False:
        return None
    if chunks is None:
        fields = [v for v in ds.data_vars.values() if v.ndim >= 2]
        if sum(v.nbytes for v in fields) <= LAZY_BYTES:
            return None
        chunks = "auto"
    if isinstance(chunks, dict):
        return chunks
    if chunks != "auto" and not (isinstance(chunks, int) and chunks >= 1):
        raise ValueError(
            f"chunks must be None, False, 'auto', a positive int or a dict, got {chunks!r}"
        )
    leading = [d for d in _LEADING if d in ds.dims]
    out = {d: -1 for d in ds.dims}
    for i, d in enumerate(leading):  # chunk the first leading dim only; time whole below it
        out[d] = chunks if i == 0 else -1
    if not leading:
        return None
    return out


def _maybe_chunk(ds: xr.Dataset, chunks) -> xr.Dataset:
    """``ds`` as dask arrays when asked (or large), unless it is already read into memory
    (the PDEBench reader loads its arrays with h5py: chunking them would only add work)."""
    in_memory = all(isinstance(v.variable._data, np.ndarray) for v in ds.data_vars.values())
    spec = None if in_memory and chunks is None else _chunking(ds, chunks)
    return ds if spec is None else ds.chunk(spec)


def _open_many(paths: list[Path], chunks) -> xr.Dataset:
    """Several NetCDF files as one lazy data set (``xarray.open_mfdataset``)."""
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
        if path.is_dir() or path.suffix.lower() in _ZARR_SUFFIXES:
            raise ValueError(f"{path}: several files must be NetCDF/HDF5, not Zarr or folders")
    first = _damaged_is_value_error(paths[0], lambda: xr.open_dataset(paths[0], engine="h5netcdf"))
    by_time = "time" in first.indexes
    concat = "time" if by_time or "sample" not in first.dims else "sample"
    spec = {} if chunks in (None, False) else _chunking(first, chunks) or {}
    first.close()
    options = {"combine": "by_coords"} if by_time else {"combine": "nested", "concat_dim": concat}

    def read():
        return xr.open_mfdataset(
            [str(p) for p in paths],
            engine="h5netcdf",
            chunks=spec,
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="exact",
            **options,
        )

    try:
        return _damaged_is_value_error(paths[0], read)
    except ValueError as error:
        if str(error).startswith("cannot read"):
            raise
        detail = str(error).splitlines()[0][:160]
        raise ValueError(
            f"cannot join {len(paths)} files along {concat!r} ({detail}); they must share "
            "their variables and spatial coordinates"
        ) from None


def save_dataset(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write ``ds`` to ``path`` atomically; .nc/.h5/.hdf5 as NetCDF4, .zarr as Zarr."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _NETCDF_SUFFIXES + _HDF5_SUFFIXES + _ZARR_SUFFIXES:
        raise ValueError(
            f"unknown format for {path}: use a .nc (NetCDF4), .h5/.hdf5 (NetCDF4 in HDF5) "
            "or .zarr path"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _fitting_encodings(_clean_attrs(ds))
    if suffix in _ZARR_SUFFIXES:
        _save_zarr(ds, path)
        return
    with atomic_path(path) as tmp, warnings.catch_warnings():
        for note in _DECODING_NOTES:
            warnings.filterwarnings("ignore", note, Warning)
        ds.to_netcdf(tmp, engine="h5netcdf")


class atomic_path:  # noqa: N801 - used as a context manager, like open()
    """Context manager giving a temporary path beside ``path``, renamed onto it on success."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self) -> Path:
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp makes 0600; give a normal file's mode
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()


def _damaged_is_value_error(path: Path, read):
    """Run ``read()``; a file that cannot be parsed is a one-line ``ValueError``."""
    try:
        with warnings.catch_warnings():  # e.g. "Ambiguous reference date string: 1-1-1"
            for note in _DECODING_NOTES:
                warnings.filterwarnings("ignore", note, Warning)
            ds = read()
            for name in ds.coords:  # decode coordinates now, so damage shows here
                ds[name].values  # noqa: B018
    except (OSError, RuntimeError, TypeError, IndexError, KeyError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"cannot read {path}: the file is damaged or not NetCDF/HDF5 ({detail[:120]})"
        ) from None
    return ds


def _fitting_encodings(ds: xr.Dataset) -> xr.Dataset:
    """Drop packing (integer dtype, scale/offset) that the values no longer fit.

    The ranges are xarray reductions, so lazy (dask) variables are checked chunk by chunk.
    """
    for name, var in ds.data_vars.items():
        encoding = var.encoding
        dtype = np.dtype(encoding.get("dtype", var.dtype))
        if not np.issubdtype(var.dtype, np.floating):
            continue
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            scale = float(encoding.get("scale_factor", 1.0))
            offset = float(encoding.get("add_offset", 0.0))
            low, high = sorted((offset + (info.min + 1) * scale, offset + info.max * scale))
            finite = var.where(np.isfinite(var))
            lo, hi = (float(r) for r in (finite.min(), finite.max()))
            if np.isfinite(lo) and (lo < low or hi > high):
                warnings.warn(
                    f"{name}: values in [{lo:.4g}, {hi:.4g}] do not fit "
                    f"the file's {dtype} packing [{low:.4g}, {high:.4g}]; writing float32",
                    RuntimeWarning,
                    stacklevel=3,
                )
                keep = {
                    k: v
                    for k, v in encoding.items()
                    if k not in ("dtype", "scale_factor", "add_offset", "_FillValue")
                }
                ds[name].encoding = keep
        elif dtype == np.float32 and var.dtype != np.float32:
            with np.errstate(over="ignore"):
                overflow = bool(np.isinf(var.astype(np.float32)).sum() > np.isinf(var).sum())
            if overflow:
                ds[name].encoding = {**encoding, "dtype": np.dtype(np.float64)}
    return ds


# ---------------------------------------------------------------------- HDF5
def _open_hdf5(path: Path) -> xr.Dataset:
    with h5py.File(path, "r") as f:
        netcdf = "_NCProperties" in f.attrs or any(
            isinstance(obj, h5py.Dataset) and "DIMENSION_LIST" in obj.attrs for obj in f.values()
        )
        if not netcdf:
            return _read_pdebench(f, path)
    return xr.open_dataset(path, engine="h5netcdf")


def _read_pdebench(f: h5py.File, path: Path) -> xr.Dataset:
    if any(name in f for name in _PDEBENCH_COORDS):
        return _pdebench_flat(f)
    groups = [k for k in f if isinstance(f[k], h5py.Group) and "data" in f[k]]
    if groups:
        return _pdebench_grouped(f, sorted(groups))
    raise ValueError(
        f"{path} is HDF5 but neither NetCDF4 nor the PDEBench layout (no 'x-coordinate' "
        "array and no per-sample groups with 'data'); found keys: "
        f"{list(f.keys())[:10]}"
    )


def _pdebench_flat(f: h5py.File) -> xr.Dataset:
    coords = {
        axis: (axis, np.asarray(f[name]), {"axis": axis.upper()})
        for name, axis in _PDEBENCH_COORDS.items()
        if name in f
    }
    space = [axis for axis in ("x", "y", "z") if axis in coords]
    sizes = [coords[a][1].size for a in space]
    t = np.asarray(f["t-coordinate"]) if "t-coordinate" in f else None
    data = {}
    for name, obj in f.items():
        if name in _PDEBENCH_COORDS or name == "t-coordinate" or not isinstance(obj, h5py.Dataset):
            continue
        arr = np.asarray(obj)
        if arr.ndim < len(space) + 1 or list(arr.shape[-len(space) :]) != sizes:
            continue
        middle = arr.shape[1 : arr.ndim - len(space)]
        if len(middle) == 1 and middle[0] == 1:
            arr, middle = arr[:, 0], ()
        if len(middle) > 1:
            raise ValueError(f"PDEBench array {name!r} of shape {arr.shape} has unknown dims")
        dims = ("sample", "time")[: 1 + len(middle)]
        data[name] = ((*dims, *space), arr)
        if middle and "time" not in coords:
            steps = middle[0]
            times = t[:steps] if t is not None and t.size >= steps else np.arange(steps)
            coords["time"] = ("time", times)
    attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _pdebench_grouped(f: h5py.File, groups: list[str]) -> xr.Dataset:
    first = f[groups[0]]
    grid = first.get("grid", {})
    space = [a for a in ("x", "y", "z") if a in grid]
    data = np.stack([np.asarray(f[g]["data"]) for g in groups])  # (N, T, *space, C)
    if data.ndim != len(space) + 3:
        raise ValueError(
            f"PDEBench group data of shape {data.shape[1:]} does not match (time, "
            f"{', '.join(space)}, channel)"
        )
    coords = {a: (a, np.asarray(grid[a]), {"axis": a.upper()}) for a in space}
    times = np.asarray(grid["t"]) if "t" in grid else np.arange(data.shape[1])
    coords["time"] = ("time", times[: data.shape[1]])
    coords["sample"] = ("sample", np.arange(len(groups)))
    variables = {
        f"u{c}" if data.shape[-1] > 1 else "u": (("sample", "time", *space), data[..., c])
        for c in range(data.shape[-1])
    }
    return xr.Dataset(variables, coords=coords)


def _attr_value(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.size == 1:
        return value.item()
    return value


def _clean_attrs(ds: xr.Dataset) -> xr.Dataset:
    """Drop attributes NetCDF cannot store (None) and turn bools into ints."""
    ds = ds.copy()

    def fix(attrs):
        out = {}
        for key, value in attrs.items():
            if value is None:
                continue
            out[key] = int(value) if isinstance(value, (bool, np.bool_)) else value
        return out

    ds.attrs = fix(ds.attrs)
    for name in ds.variables:
        ds[name].attrs = fix(ds[name].attrs)
    return ds


# ---------------------------------------------------------------------- Zarr
def _require_zarr():
    try:
        import zarr  # noqa: F401
    except ImportError as error:
        raise ValueError(
            'reading or writing Zarr needs the zarr package: pip install "sciml-diffusion[zarr]"'
        ) from error


def _open_zarr(path: Path, chunks=None) -> xr.Dataset:
    _require_zarr()
    ds = xr.open_zarr(path, consolidated=False, chunks=None)
    spec = _chunking(ds, chunks)  # "auto" along sample/time: multiples of the store's chunks
    return ds if spec is None else xr.open_zarr(path, consolidated=False, chunks=spec)


def _save_zarr(ds: xr.Dataset, path: Path) -> None:
    _require_zarr()
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        ds.to_zarr(tmp, mode="w", consolidated=False)
        backup = None
        if path.exists():
            backup = path.with_name(f".{path.name}.old")
            os.replace(path, backup)
        os.replace(tmp, path)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
