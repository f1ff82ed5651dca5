"""The interface every PDE problem keeps, and the pieces the problems share.

A problem is an object with

- ``name``: the registry and command-line name (``darcy``, ``navier_stokes``, ...);
- ``variables``: the physical quantities it produces, each a :class:`Variable` whose
  ``role`` says whether it is an ``"input"`` (coefficient, source, initial state) or a
  ``"solution"``;
- ``generate(n, grid, seed, ...)``: ``n`` independent samples as a
  :class:`~sciml_diffusion.fields.FieldDataset` with physical coordinates and attributes
  recording the recipe (problem, parameters, seed, package version);
- ``residual(fields, grid)``: the discrete equation evaluated on a batch of fields, in
  physical units, differentiable, on the fields' device; zero for an exact discrete
  solution;
- ``fixed_nodes(grid)``: where a boundary condition fixes a variable (for observation
  protocols that exclude those nodes).

Sample ``i`` of a data set generated with seed ``s`` draws its random input from
``torch.Generator().manual_seed(s + i)``, so a data set does not depend on how samples are
split between worker processes or batches.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from sciml_diffusion.fields import Grid
from sciml_diffusion.fields.dataset import FieldDataset

__all__ = [
    "Variable",
    "Problem",
    "sample_generator",
    "map_samples",
    "batches",
    "batch_device",
    "build_dataset",
    "unpack_fields",
    "resolve_grid",
    "single_thread",
    "check_count",
    "check_positive",
]

ROLES = ("input", "solution")


@dataclass(frozen=True)
class Variable:
    """One physical quantity of a problem.

    Parameters
    ----------
    name : str
        Data-variable name in the data set and channel name on the torch side.
    role : str
        ``"input"`` (coefficient, source or initial state) or ``"solution"``.
    long_name : str
        Human-readable description, stored as the CF ``long_name`` attribute.
    units : str
        Units attribute (``"1"`` for non-dimensional quantities).
    """

    name: str
    role: str
    long_name: str
    units: str = "1"

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"variable role must be one of {ROLES}, got {self.role!r}")


class Problem:
    """Base class of the PDE problems; subclasses set ``name`` and ``variables``.

    Subclasses implement :meth:`generate`, :meth:`residual`, :meth:`default_grid` and
    :meth:`parameters`.
    """

    name: str = ""
    variables: tuple[Variable, ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the input variables (coefficients, sources, initial states)."""
        return tuple(v.name for v in self.variables if v.role == "input")

    @property
    def solutions(self) -> tuple[str, ...]:
        """Names of the solution variables."""
        return tuple(v.name for v in self.variables if v.role == "solution")

    def parameters(self) -> dict:
        """The recipe parameters, as numbers and strings (stored in data-set attributes)."""
        raise NotImplementedError

    def default_grid(self, resolution: int) -> Grid:
        """The problem's standard grid with ``resolution`` nodes per axis."""
        raise NotImplementedError

    def generate(self, n: int, grid: Grid | int, seed: int = 0, **options) -> FieldDataset:
        """Generate ``n`` samples on ``grid`` (a :class:`Grid` or a resolution)."""
        raise NotImplementedError

    def residual(self, fields, grid: Grid) -> torch.Tensor:
        """The discrete equation's residual on a batch of fields, in physical units."""
        raise NotImplementedError

    def fixed_nodes(self, grid: Grid) -> dict[str, np.ndarray]:
        """Nodes where a variable is fixed by a boundary condition, ``name -> (*spatial)`` bool.

        An observation protocol can leave them out (a sensor there reads a known value).
        Variables not listed are free everywhere; the default lists none.
        """
        return {}

    def recipe_attrs(self, seed: int, grid: Grid) -> dict:
        """NetCDF-safe global attributes recording how a data set was made."""
        from sciml_diffusion import __version__

        attrs = {
            "problem": self.name,
            "seed": int(seed),
            "sciml_diffusion_version": __version__,
            "resolution": list(grid.shape),
        }
        for key, value in self.parameters().items():
            attrs[f"param_{key}"] = _netcdf_value(value)
        return attrs

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({params})"


def _netcdf_value(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return [float(v) for v in value]
    return str(value)


def sample_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of sample ``index`` in a data set with ``seed``."""
    return torch.Generator().manual_seed(int(seed) + int(index))


def resolve_grid(problem: Problem, grid: Grid | int) -> Grid:
    """A :class:`Grid` from a grid or a resolution (``problem.default_grid``)."""
    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        return problem.default_grid(int(grid))
    raise ValueError(f"grid must be a Grid or an integer resolution, got {grid!r}")


def check_count(n: int) -> int:
    """Validate a number of samples."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"number of samples must be a positive integer, got {n!r}")
    return int(n)


def batches(n: int, batch_size: int) -> tuple[list[int], list[int]]:
    """First indices and sizes of the batches that cover ``n`` samples, ``batch_size`` each."""
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    starts = list(range(0, n, int(batch_size)))
    return starts, [min(int(batch_size), n - s) for s in starts]


def batch_device(device, workers: int) -> torch.device:
    """The device a generator integrates on (CPU by default); worker processes need the CPU."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if workers != 1 and device.type != "cpu":
        raise ValueError(f"workers={workers} needs device='cpu'; on {device} use workers=1")
    return device


def check_positive(name: str, value: float) -> float:
    """Validate a strictly positive, finite parameter."""
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def _limit_threads() -> None:
    torch.set_num_threads(1)


@contextlib.contextmanager
def single_thread():
    """Run torch on one CPU thread inside the block (restored after).

    Sample generation parallelises across processes (``workers``); inside one, the small
    per-sample FFTs and stencils are fastest, and unaffected by other processes' load, on
    a single thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def map_samples(
    func: Callable,
    items: Sequence,
    workers: int = 1,
    progress: bool = False,
    desc: str = "",
    weights: Sequence[int] | None = None,
) -> list:
    """``[func(item) for item in items]``, in ``workers`` processes, with a progress bar.

    Each process runs torch on one thread (:func:`single_thread`).

    Parameters
    ----------
    func : callable
        A module-level function (it is pickled to the workers).
    items : sequence
        Arguments, one per task; results come back in the same order.
    workers : int
        Number of processes; 1 runs in this process.
    progress : bool
        Show a tqdm bar counting samples.
    weights : sequence of int, optional
        Samples per task for the progress bar (default 1 each).
    """
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    weights = list(weights) if weights is not None else [1] * len(items)
    bar = tqdm(total=sum(weights), desc=desc, unit="sample", disable=not progress)
    with bar:
        if workers == 1 or len(items) <= 1:
            with single_thread():
                return list(_tick(map(func, items), bar, weights))
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            max_workers=min(int(workers), len(items)),
            mp_context=context,
            initializer=_limit_threads,
        )
        try:
            results = list(_tick(pool.map(func, items), bar, weights))
        except BaseException:  # Ctrl-C or a failed sample: drop the queued work, re-raise
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return results


def _tick(results: Iterable, bar, weights: Sequence[int]):
    for result, weight in zip(results, weights):
        bar.update(weight)
        yield result


def unpack_fields(fields, names: Sequence[str], spatial_ndim: int) -> dict[str, torch.Tensor]:
    """Split fields into named tensors.

    Parameters
    ----------
    fields : torch.Tensor or mapping or FieldDataset
        ``(B, C, *spatial)`` / ``(B, T, C, *spatial)`` with channels in the order of
        ``names``; or a mapping ``name -> (B, *spatial)`` / ``(B, T, *spatial)``; or a
        :class:`FieldDataset` holding the variables.
    names : sequence of str
        The variable names expected, in channel order.
    spatial_ndim : int
        Number of spatial dims.

    Returns
    -------
    dict of name -> tensor without the channel dim.
    """
    if isinstance(fields, FieldDataset):
        fields = fields.to_tensor(list(names), dtype=torch.float64)
    if isinstance(fields, Mapping):
        missing = [name for name in names if name not in fields]
        if missing:
            raise ValueError(f"fields lack {missing}; this problem needs {list(names)}")
        return {name: torch.as_tensor(fields[name]) for name in names}
    fields = torch.as_tensor(fields)
    channel = fields.ndim - spatial_ndim - 1
    if channel < 1 or fields.shape[channel] != len(names):
        raise ValueError(
            f"fields of shape {tuple(fields.shape)} are not (B, {len(names)}, *spatial) or "
            f"(B, T, {len(names)}, *spatial) with channels {list(names)}"
        )
    return {name: fields.select(channel, i) for i, name in enumerate(names)}


def build_dataset(
    fields: Mapping[str, torch.Tensor | np.ndarray],
    variables: Sequence[Variable],
    grid: Grid,
    attrs: Mapping,
    time: np.ndarray | None = None,
) -> FieldDataset:
    """A :class:`FieldDataset` from named arrays ``(B, *spatial)`` or ``(B, T, *spatial)``.

    Arrays with a time axis get the ``time`` coordinate ``time``; every array is stored
    as float32 with the variable's ``long_name``, ``units`` and ``role`` attributes.
    """
    coords = dict(grid.xarray_coords())
    info = {v.name: v for v in variables}
    data = {}
    for name, values in fields.items():
        array = torch.as_tensor(values).detach().cpu().numpy().astype(np.float32)
        lead = array.ndim - grid.ndim
        dims = ("sample", "time")[:lead]
        var = info[name]
        data[name] = (
            (*dims, *grid.axes),
            array,
            {"long_name": var.long_name, "units": var.units, "role": var.role},
        )
        coords["sample"] = ("sample", np.arange(array.shape[0]))
    if time is not None:
        coords["time"] = ("time", np.asarray(time, dtype=np.float64), {"axis": "T", "units": "1"})
    return FieldDataset(xr.Dataset(data, coords=coords, attrs=dict(attrs)))
