"""``sciml-diffusion data ...``: inspect field data sets and generate PDE data sets."""

from __future__ import annotations

import argparse
from pathlib import Path

from sciml_diffusion.cli.checks import (
    check_device,
    check_output_dir,
    check_output_file,
    check_plot_path,
    parse_variables,
    positive_int,
)

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group."""
    parser = groups.add_parser("data", help="inspect and generate field data sets")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    info = commands.add_parser(
        "info", help="summarise a NetCDF/HDF5/Zarr file: dims, grid, variables, NaN, ranges"
    )
    info.add_argument("file", help="path to a .nc, .h5/.hdf5 or .zarr data set")
    info.add_argument("--variables", default=None, help="comma-separated variables to show")
    info.set_defaults(func=_info)
    _register_make(commands)


def _info(args: argparse.Namespace) -> None:
    from sciml_diffusion.fields import FieldDataset
    from sciml_diffusion.fields.dataset import describe_dataset, spatial_dims
    from sciml_diffusion.fields.io import open_dataset

    variables = parse_variables(args.variables)
    ds = open_dataset(args.file)
    print(f"file: {args.file}")
    try:
        spatial_dims(ds)
    except ValueError:  # no spatial dims: a time series or a table, summarised as such
        print(describe_dataset(ds, variables))
        return
    print(FieldDataset(ds, variables=variables).describe())


# ---------------------------------------------------------------------- data make
#: the names of sciml_diffusion.pdes (kept here so that --help needs no torch import)
PROBLEM_NAMES = (
    "darcy", "poisson", "helmholtz", "navier_stokes", "kolmogorov", "burgers", "cylinder",
)  # fmt: skip

#: problem options with their own flag: (flag, parameter, type, help)
_PROBLEM_OPTIONS = (
    ("--steps", "steps", int, "saved time intervals (time-dependent problems)"),
    ("--dt", "dt", float, "largest integrator time step (> 0), in the problem's time units"),
    ("--viscosity", "viscosity", float, "viscosity nu (> 0; navier_stokes, burgers)"),
    ("--final-time", "final_time", float, "length of the saved trajectory, in time units"),
    ("--spinup", "spinup", float, "time integrated and discarded first (kolmogorov)"),
    ("--reynolds", "reynolds", float, "Reynolds number 1/nu (kolmogorov)"),
    ("--wavenumber", "wavenumber", float, "k (helmholtz) or forcing wavenumber (kolmogorov)"),
)
_NETCDF_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5")


def _register_make(commands) -> None:
    make = commands.add_parser(
        "make",
        help="generate a PDE data set (one problem, or a recipe from datasets/)",
        description="Generate samples of a PDE problem and write them as NetCDF through the "
        "data layer, atomically (an interrupted run leaves no file under the final name).",
    )
    make.add_argument("problem", nargs="?", help=f"one of: {', '.join(PROBLEM_NAMES)}")
    make.add_argument("--recipe", default=None, help="a recipe YAML (datasets/*.yaml)")
    make.add_argument("--size", default="quick", help="recipe size (quick or full)")
    make.add_argument("--samples", type=positive_int, default=None, help="number of samples")
    make.add_argument("--resolution", type=positive_int, default=None, help="grid nodes per axis")
    make.add_argument("--seed", type=int, default=None, help="sample i uses seed + i (default 0)")
    make.add_argument(
        "--out", default=None, help="output .nc file; with --recipe a directory (default data/)"
    )
    for flag, _, kind, text in _PROBLEM_OPTIONS:
        make.add_argument(flag, type=kind, default=None, help=text)
    make.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other problem parameter, e.g. --param tau=4 (repeatable)",
    )
    make.add_argument("--workers", type=positive_int, default=1, help="processes across samples")
    make.add_argument(
        "--batch-size", type=positive_int, default=None, help="samples per torch batch"
    )
    make.add_argument("--device", default=None, help="torch device of time-dependent problems")
    make.add_argument("--dtype", choices=("float32", "float64"), default=None)
    make.add_argument("--overwrite", action="store_true", help="replace an existing file")
    make.add_argument(
        "--plot", default=None, help="optional PNG of the first samples (one problem only)"
    )
    make.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    make.add_argument("--force", action="store_true", help="skip the memory check")
    make.set_defaults(func=_make)


def _make(args: argparse.Namespace) -> None:
    overrides = _parameter_overrides(args)
    if args.recipe is not None:
        given = [args.problem, args.samples, args.resolution, args.seed]
        if any(value is not None for value in given):
            raise ValueError(
                "give either PROBLEM with --samples/--resolution/--seed, or --recipe (which "
                "sets them)"
            )
        _make_recipe(args, overrides)
        return
    if args.problem is None:
        raise ValueError("name a PROBLEM (" + ", ".join(PROBLEM_NAMES) + ") or give --recipe")
    missing = [f for f in ("samples", "resolution", "out") if getattr(args, f) is None]
    if missing:
        raise ValueError("data make PROBLEM needs " + ", ".join(f"--{m}" for m in missing))
    seed = args.seed if args.seed is not None else 0
    out = check_output_file(args.out, overwrite=args.overwrite)
    check_plot_path(args.plot, overwrite=args.overwrite, inputs=[out])
    _generate_file(
        args.problem, overrides, args.resolution, args.samples, seed, Path(args.out), args, {}
    )


def _make_recipe(args: argparse.Namespace, overrides: dict) -> None:
    import yaml

    from sciml_diffusion.pdes.recipes import load_recipe

    if args.plot is not None:
        raise ValueError("--plot draws one problem's samples; it does not apply to --recipe")
    try:
        recipe = load_recipe(args.recipe)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ValueError(f"--recipe {args.recipe} is not valid YAML{line}; fix the file") from None
    except (TypeError, AttributeError) as error:
        raise ValueError(f"--recipe {args.recipe} is not a recipe: {error}") from None
    out_dir = Path(args.out) if args.out is not None else Path("data")
    if out_dir.suffix in _NETCDF_SUFFIXES:
        raise ValueError(f"with --recipe, --out is a directory, got the file name {out_dir}")
    check_output_dir(out_dir, inputs=[args.recipe])
    jobs = list(recipe.jobs(args.size))
    for job in jobs:
        check_output_file(out_dir / job.filename(), overwrite=args.overwrite)
    for job in jobs:
        parameters = {**job.parameters, **overrides}
        _generate_file(
            job.problem,
            parameters,
            job.resolution,
            job.samples,
            job.seed,
            out_dir / job.filename(),
            args,
            job.generate,
        )


def _generate_file(name, parameters, resolution, samples, seed, out: Path, args, defaults):
    import time

    from sciml_diffusion import pdes
    from sciml_diffusion.pdes.evolution import EvolutionProblem

    problem = pdes.get(name, **parameters)
    if out.suffix.lower() not in _NETCDF_SUFFIXES:
        raise ValueError(f"--out must end in one of {', '.join(_NETCDF_SUFFIXES)}, got {out}")
    _check_make_memory(problem, samples, resolution, args.force)
    options = {"workers": args.workers, "progress": not args.no_progress}
    torch_options = _torch_options(args, defaults)
    if isinstance(problem, EvolutionProblem):
        options.update(torch_options)
    elif torch_options.keys() - defaults.keys():
        raise ValueError(
            f"--batch-size, --device and --dtype apply to time-dependent "
            f"problems, not {problem.name}"
        )
    start = time.perf_counter()
    data = problem.generate(samples, resolution, seed, **options)
    data.save(out)
    seconds = time.perf_counter() - start
    print(f"wrote {out}: {samples} samples of {problem.name} on {data.grid} in {seconds:.1f} s")
    if getattr(args, "plot", None):
        from sciml_diffusion.plot import plot_fields

        plot_fields(data, samples=min(samples, 4), path=args.plot, title=problem.name)
        print(f"wrote {args.plot}")


def _check_make_memory(problem, samples: int, resolution: int, force: bool) -> None:
    """The data set in float64 (every saved time) plus a solver's workspace per sample."""
    from sciml_diffusion.cli.checks import check_memory

    nodes = float(resolution) ** problem.default_grid(3).ndim
    times = int(problem.parameters().get("steps", 0)) + 1
    data = samples * nodes * len(problem.variables) * times * 8 * 2
    check_memory(
        data + nodes * 8 * 64,
        f"{samples} {problem.name} samples at resolution {resolution}",
        force=force,
    )


def _torch_options(args: argparse.Namespace, defaults: dict) -> dict:
    import torch

    options = {}
    batch_size = args.batch_size if args.batch_size is not None else defaults.get("batch_size")
    if batch_size is not None:
        options["batch_size"] = int(batch_size)
    device = args.device if args.device is not None else defaults.get("device")
    if device is not None:
        options["device"] = str(check_device(device))
    dtype = args.dtype if args.dtype is not None else defaults.get("dtype")
    if dtype is not None:
        options["dtype"] = {"float32": torch.float32, "float64": torch.float64}[dtype]
    return options


def _parameter_overrides(args: argparse.Namespace) -> dict:
    overrides = {}
    for _, name, _, _ in _PROBLEM_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    for item in args.param:
        if "=" not in item:
            raise ValueError(f"--param takes NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip().replace("-", "_")] = _number(value.strip())
    return overrides


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
