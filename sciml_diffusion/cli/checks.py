"""Checks every command runs before it starts work: outputs, devices, memory, arguments.

A command calls these first, so that a mistake in an output path, a device name or a
request too large for the machine is reported in one line before an hour of training or
sampling, and so that nothing a user has is overwritten without ``--overwrite``:

- :func:`check_output_file` / :func:`check_output_dir` / :func:`check_plot_path`: the output
  does not exist (or ``--overwrite``), is not one of the inputs, has a known file ending, is
  not a folder where a file is expected, and its folder can be created and written;
  stale temporary files of an interrupted earlier write are removed;
- :func:`check_device`: a torch device that exists on this machine;
- :func:`check_memory`: a request's estimated size against the memory available;
- :func:`parse_variables`, :func:`parse_resolution` and the ``argparse`` types
  :func:`positive_int`, :func:`positive_float`, :func:`finite_float`,
  :func:`nonnegative_float`, :func:`fraction`: arguments validated the same way everywhere.

Every function raises ``ValueError`` / ``FileExistsError`` / ``FileNotFoundError`` with a
one-line message naming the option and what to do; the CLI prints it and exits 2.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "FIELD_SUFFIXES",
    "IMAGE_SUFFIXES",
    "check_output_file",
    "check_output_dir",
    "RUN_FILES",
    "check_plot_path",
    "check_input_file",
    "remove_stale_tmp",
    "check_device",
    "available_memory",
    "check_memory",
    "parse_variables",
    "parse_resolution",
    "positive_int",
    "nonnegative_int",
    "positive_float",
    "nonnegative_float",
    "finite_float",
    "fraction",
    "chunks_option",
    "CHUNKS_HELP",
]

#: file endings the data layer writes (NetCDF4, NetCDF4 in HDF5, Zarr)
FIELD_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5", ".zarr")
#: file endings matplotlib writes for --plot
IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


# ---------------------------------------------------------------------- output paths
def check_output_file(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    suffixes: Sequence[str] = FIELD_SUFFIXES,
    option: str = "--out",
) -> Path:
    """Check that ``path`` may be written as a new file; returns it as a ``Path``.

    Refuses (in this order) an existing folder where a file is expected (``.zarr`` stores
    are folders and may be replaced with ``overwrite``), a file ending not in ``suffixes``,
    a path equal to one of ``inputs`` (even with ``overwrite``), an existing
    file without ``overwrite``, and a folder that cannot be created or written. Removes
    temporary files (``.NAME.*.tmp``) that an interrupted earlier write left beside it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir() and suffix != ".zarr":
        raise ValueError(f"{option} {path} is a folder; give a file name inside it")
    if suffixes and suffix not in suffixes:
        raise ValueError(f"{option} {path} must end in one of {', '.join(suffixes)}")
    _check_not_an_input(path, inputs, option)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{option} {path} exists; pass --overwrite to replace it or choose another name"
        )
    _check_writable_parent(path, option)
    remove_stale_tmp(path)
    return path


#: files a training run writes into its folder (sde and prior runs)
RUN_FILES = (
    "checkpoint.pt", "config.json", "normalizer.json", "layout.nc", "log.jsonl", "model.pt",
    "trainer.pt",
)  # fmt: skip


def check_output_dir(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    option: str = "--out",
    run_files: Sequence[str] = RUN_FILES,
) -> Path:
    """Check that ``path`` can be used as a run folder (created if missing).

    Refuses an existing file, a path equal to an input, and a folder that cannot be
    written. Removes the temporary files (``.NAME.*.tmp`` or ``NAME.tmp`` for ``NAME`` in
    ``run_files``) that an interrupted checkpoint write left inside it; nothing else in the
    folder is touched. Whether an existing run may be continued is the trainer's decision.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file; a run folder is needed (a new name)")
    _check_not_an_input(path, inputs, option)
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{option} {path} is not writable; choose another folder")
        for name in run_files:
            remove_stale_tmp(path / name)
            (path / f"{name}.tmp").unlink(missing_ok=True)
    else:
        _check_writable_parent(path, option)
    return path


def check_plot_path(
    path: str | os.PathLike | None,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path | None:
    """Check a ``--plot`` path like :func:`check_output_file` (image endings); ``None`` passes."""
    if path is None:
        return None
    return check_output_file(
        path, overwrite=overwrite, inputs=inputs, suffixes=IMAGE_SUFFIXES, option="--plot"
    )


def check_input_file(path: str | os.PathLike, option: str = "--data") -> Path:
    """An input that must exist: a one-line error naming ``option`` otherwise."""
    path = Path(path)
    if not path.exists() and not (set(str(path)) & set("*?[") and glob.glob(str(path))):
        raise FileNotFoundError(f"{option} {path}: no such file")
    return path  # a glob pattern matching files stays a pattern (several NetCDF files)


def remove_stale_tmp(path: str | os.PathLike) -> list[Path]:
    """Delete ``.NAME.*.tmp`` files (and folders) an interrupted write of ``path`` left.

    The data layer writes ``path`` as a temporary ``.NAME.<random>.tmp`` beside it and
    renames it into place; a killed process leaves the temporary behind.
    """
    import shutil

    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def _check_not_an_input(path: Path, inputs, option: str) -> None:
    target = _resolved(path)
    for given in inputs:
        if given is None:
            continue
        source = _resolved(Path(given))
        if target == source or (path.exists() and Path(given).exists() and _same(path, given)):
            raise ValueError(f"{option} {path} is also an input ({given}); write to another path")


def _same(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(path)))


def _check_writable_parent(path: Path, option: str) -> None:
    parent = _resolved(path).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the folder {parent} is not writable")


# ---------------------------------------------------------------------- device and memory
def check_device(name: str | None, option: str = "--device"):
    """The ``torch.device`` for ``name`` (``auto`` picks CUDA when present); one-line errors.

    Refuses names torch does not know (``banana``) and devices this machine lacks
    (``cuda`` without CUDA, ``cuda:3`` on a one-GPU machine, ``mps`` off Apple silicon).
    """
    import torch

    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"{option} {name!r} is not a torch device; use cpu, cuda, cuda:N, mps or auto"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{option} {name}: this machine has no CUDA device; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"{option} {name}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option} {name}: MPS is not available on this machine; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{option} {name}: unsupported device type; use cpu, cuda or mps")
    return device


def available_memory(device=None) -> int:
    """Bytes available for a new allocation: free GPU memory on CUDA, else free RAM."""
    import torch

    if device is not None and torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo") as handle:
            info = dict(line.split(":", 1) for line in handle)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages else 2**62


def check_memory(nbytes: float, what: str, *, force: bool = False, device=None) -> None:
    """Refuse a request whose estimated memory ``nbytes`` exceeds what the machine has.

    ``what`` describes the request in the message (e.g. ``"64 samples on 4096x4096"``);
    ``force`` (the ``--force`` flag) skips the check.
    """
    if force:
        return
    have = available_memory(device)
    if nbytes > have:
        raise ValueError(
            f"{what} needs about {_bytes(nbytes)} of memory but {_bytes(have)} is available; "
            "ask for less, or pass --force to try anyway"
        )


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PB"  # pragma: no cover


# ---------------------------------------------------------------------- argument values
def parse_variables(text: str | None, option: str = "--variables") -> list[str] | None:
    """``"a, u"`` -> ``["a", "u"]``: names stripped; empty names and repeats are refused."""
    if text is None:
        return None
    names = [name.strip() for name in str(text).split(",")]
    if any(not name for name in names):
        raise ValueError(f"{option} {text!r} has an empty name; write e.g. a,u")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{option} {text!r} names {', '.join(repeated)} twice; name each once")
    return names


def parse_resolution(
    text: str | int | None, shape: Sequence[int] | None = None, option: str = "--resolution"
) -> tuple[int, ...] | None:
    """A sampling shape from ``N`` (every axis), ``N1,N2,..`` (per axis) or ``xF`` (scale).

    ``shape`` is the grid the resolution applies to; a single ``N`` is refused on a
    non-square grid (say which axis gets what), and ``xF`` scales every axis by ``F``.
    """
    if text is None:
        return None
    text = str(text).strip()
    ndim = len(shape) if shape is not None else None
    try:
        if text.lower().startswith("x"):
            if shape is None:
                raise ValueError
            factor = float(text[1:])
            if not math.isfinite(factor) or factor <= 0:
                raise ValueError
            sizes = tuple(max(2, round(n * factor)) for n in shape)
        else:
            sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(
            f"{option} {text!r}: give nodes per axis (64 or 36,60) or a scale factor (x2)"
        ) from None
    if any(n < 2 for n in sizes):
        raise ValueError(f"{option} {text}: every axis needs at least 2 nodes")
    if ndim is not None and len(sizes) == 1 and ndim > 1:
        if len(set(shape)) > 1:
            shown = "x".join(str(n) for n in shape)
            raise ValueError(
                f"{option} {text}: the grid is {shown}, not square; give one size per axis "
                f"(e.g. {','.join(str(2 * n) for n in shape)}) or a scale factor (x2)"
            )
        sizes = sizes * ndim
    if ndim is not None and len(sizes) != ndim:
        raise ValueError(f"{option} {text}: {len(sizes)} sizes for a {ndim}-D grid")
    return sizes


def _number(kind, text: str, test, requirement: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not finite; give a finite number")
    if not test(value):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(int, text, lambda v: v >= 1, ">= 1")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(int, text, lambda v: v >= 0, ">= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(float, text, lambda v: v > 0, "> 0")


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _number(float, text, lambda v: v >= 0, ">= 0")


def finite_float(text: str) -> float:
    """argparse type: any finite number."""
    return _number(float, text, lambda v: True, "finite")


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    return _number(float, text, lambda v: 0 <= v <= 1, "in [0, 1]")


#: help of ``--chunks`` (``prior train``, ``forecast train``)
CHUNKS_HELP = (
    "read the data lazily from disk, N samples (or time steps) per dask chunk, or 'auto' "
    "(about 128 MiB each); unset: lazy only for data larger than 1 GiB"
)


def chunks_option(text: str):
    """argparse type of ``--chunks``: ``"auto"`` or an integer >= 1 (``FieldDataset.open``)."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a number of samples per chunk (>= 1), got {text!r}"
        ) from None


def add_speed_flags(parser, default=None) -> None:
    """``--bf16`` and ``--compile``, the GPU fast paths (off by default; bf16 ignored on CPU).

    ``default=None`` leaves a run's stored setting alone unless the flag is given (resume).
    """
    parser.add_argument(
        "--bf16",
        action="store_true",
        default=default,
        help="bfloat16 autocast around each network call on CUDA (ignored on CPU)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        default=default,
        help="torch.compile the networks (eager with a warning if compilation fails)",
    )
