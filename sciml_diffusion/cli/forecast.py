"""``sciml-diffusion forecast train|run``: train a probabilistic forecaster on trajectories in
a NetCDF file, and forecast an ensemble from an initial state."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sciml_diffusion.cli.checks import CHUNKS_HELP, add_speed_flags, chunks_option

__all__ = ["register", "parse_lead_times", "check_output_file"]

_METHODS = ("diffusion", "dyffusion", "rolling")
_OUTPUT_SUFFIXES = (".nc", ".nc4", ".h5", ".hdf5", ".zarr")


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``forecast`` command group."""
    parser = groups.add_parser("forecast", help="probabilistic spatiotemporal forecasting")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train a forecaster (every stage of the method, in sequence)",
        description="Train a forecaster on windows of context + horizon frames of the "
        "trajectories in --data (a time dim is required; NaN marks points without data).",
    )
    train.add_argument("--method", choices=_METHODS, default=None, help="default diffusion")
    train.add_argument("--data", required=True, help="trajectories (.nc, .h5, .zarr) with time")
    train.add_argument("--val-data", default=None, help="validation trajectories (optional)")
    train.add_argument("--chunks", type=chunks_option, default=None, help=CHUNKS_HELP)
    train.add_argument("--variables", default=None, help="comma-separated (default all)")
    train.add_argument("--context", type=int, default=None, help="input frames (default 1)")
    train.add_argument("--horizon", type=int, default=None, help="frames per forecast chunk")
    train.add_argument("--out", required=True, help="run directory")
    train.add_argument("--config", default=None, help="JSON file of ForecastConfig settings")
    train.add_argument("--steps", type=int, default=None, help="training steps per stage")
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--width", type=int, default=None, help="backbone channels")
    train.add_argument("--modes", type=int, default=None, help="Fourier modes per axis")
    train.add_argument(
        "--interpolator", default=None, help="dyffusion: reuse the interpolator of this run"
    )
    train.add_argument("--device", default=None, help="auto, cpu, cuda, ...")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_speed_flags(train)
    train.add_argument(
        "--pin-memory",
        action="store_true",
        default=None,
        help="page-locked host windows for faster copies to the GPU (lazy data, CUDA only)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    run = commands.add_parser("run", help="forecast an ensemble from an initial state")
    run.add_argument("--checkpoint", required=True, help="run directory of a trained forecaster")
    run.add_argument("--initial", required=True, help="file whose last frames start the forecast")
    run.add_argument(
        "--lead-times", required=True, help="time steps ahead: '1,2,4' or a range '1-12'"
    )
    run.add_argument("--members", type=int, default=8, help="ensemble size")
    run.add_argument("--seed", type=int, default=0, help="random seed (member i: seed, i)")
    run.add_argument("--batch-size", type=int, default=None, help="members per batch (all)")
    run.add_argument("--device", default="cpu")
    run.add_argument("--no-rollout", action="store_true", help="refuse leads beyond the horizon")
    run.add_argument("--out", required=True, help="output .nc")
    run.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    run.add_argument("--plot", default=None, help="optional PNG of the forecast")
    add_speed_flags(run)
    run.set_defaults(func=_run)


#: command-line flag -> ForecastConfig field
_FLAGS = {
    "method": "method",
    "context": "context",
    "horizon": "horizon",
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "width": "width",
    "modes": "n_modes",
    "device": "device",
    "seed": "seed",
    "interpolator": "interpolator",
    "bf16": "bf16",
    "compile": "compile",
    "pin_memory": "pin_memory",
}


def parse_lead_times(text: str) -> list[int]:
    """``"1,2,4"`` or ``"1-12"`` (or a mix, ``"1-4,8,12"``) as a sorted list of ints >= 1."""
    leads: set[int] = set()
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                leads.update(range(lo, hi + 1))
            elif part:
                leads.add(int(part))
    except ValueError as error:
        raise ValueError(
            f"--lead-times {text!r} is not a list of integers like '1,2,4' or '1-12'"
        ) from error
    if not leads or min(leads) < 1:
        raise ValueError(f"--lead-times must be integers >= 1, got {text!r}")
    return sorted(leads)


def check_output_file(path, overwrite: bool, what: str = "--out") -> Path:
    """Refuse an existing file without ``overwrite``, an unknown suffix, a missing folder."""
    path = Path(path)
    if path.suffix.lower() not in _OUTPUT_SUFFIXES:
        raise ValueError(f"{what} {path} needs a suffix among {', '.join(_OUTPUT_SUFFIXES)}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    if path.parent != Path("") and path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"{what} {path}: {path.parent} is not a directory")
    return path


def check_plot_file(path, overwrite: bool) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"--plot {path} needs a .png, .pdf or .svg suffix")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    return path


def _settings(args) -> dict:
    settings = {}
    out = Path(args.out)
    if args.resume and (out / "config.json").exists():
        from sciml_diffusion.forecast.base import read_forecast_config

        settings = dict(read_forecast_config(out)["config"])
    if args.config:
        try:
            settings.update(json.loads(Path(args.config).read_text()))
        except json.JSONDecodeError as error:
            raise ValueError(f"--config {args.config} is not valid JSON: {error}") from error
    if args.variables:
        settings["variables"] = [v.strip() for v in args.variables.split(",") if v.strip()]
    for flag, key in _FLAGS.items():
        if getattr(args, flag) is not None:
            settings[key] = getattr(args, flag)
    return settings


def _train(args: argparse.Namespace) -> None:
    """Train a forecaster; under ``torchrun``, one DDP replica per process (rank 0 writes)."""
    from sciml_diffusion import distributed, forecast
    from sciml_diffusion.data_parallel import decided_on_main
    from sciml_diffusion.fields import FieldDataset

    with distributed.session(_session_device(args)):
        out, settings = decided_on_main(_train_plan, args)
        variables = settings.get("variables")
        data = FieldDataset.open(args.data, variables=variables, chunks=args.chunks)
        val = (
            FieldDataset.open(args.val_data, variables=variables, chunks=args.chunks)
            if args.val_data
            else None
        )
        progress = not args.quiet
        model = forecast.fit(data, val, settings, out=out, resume=args.resume, progress=progress)
        if distributed.is_main():
            print(f"trained {model}; run directory {out}")


def _session_device(args: argparse.Namespace) -> str:
    """The device the process group is set up for: --device, else auto (CUDA if present)."""
    from sciml_diffusion.cli.checks import check_device

    try:
        return str(check_device(args.device))
    except ValueError:
        return "auto"  # the error is reported by the trainer, on every rank


def _train_plan(args: argparse.Namespace):
    """Checks before any work (rank 0 decides): run directory, settings, data files."""
    from sciml_diffusion import forecast

    out = Path(args.out)
    if not args.resume and (out / "config.json").exists():
        raise FileExistsError(
            f"{out} already holds a forecaster run; pass --resume to continue it or choose a "
            "new --out (nothing was overwritten)"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a directory for the run")
    settings = _settings(args)
    forecast.ForecastConfig.from_dict(settings).validate()  # fail before reading data
    for name in (args.data, args.val_data):
        if name is not None and not Path(name).exists():
            raise FileNotFoundError(f"no data file at {name}")
    return out, settings


def _run(args: argparse.Namespace) -> None:
    from sciml_diffusion import distributed
    from sciml_diffusion.cli.checks import check_device

    with distributed.session(check_device(args.device)) as ctx:
        _run_sharded(args, ctx)


def _run_outputs(args: argparse.Namespace):
    out = check_output_file(args.out, args.overwrite)
    plot = check_plot_file(args.plot, args.overwrite)
    leads = parse_lead_times(args.lead_times)
    if args.members < 1:
        raise ValueError(f"--members must be >= 1, got {args.members}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not Path(args.initial).exists():
        raise FileNotFoundError(f"no initial-state file at {args.initial}")
    return out, plot, leads


def _run_sharded(args: argparse.Namespace, ctx) -> None:
    """``forecast run`` on every rank: members split by rank, gathered and written on rank 0."""
    import torch

    from sciml_diffusion import distributed, forecast
    from sciml_diffusion.fields.io import open_dataset, save_dataset

    out, plot, leads = distributed.run_on_main(_run_outputs, args)
    model = forecast.load(
        args.checkpoint, device=ctx.device, bf16=bool(args.bf16), compile=bool(args.compile)
    )
    initial = open_dataset(args.initial)
    with torch.no_grad():
        ensemble = model.forecast(
            initial,
            leads,
            members=args.members,
            generator=args.seed,
            rollout=not args.no_rollout,
            progress=ctx.is_main,
            batch_size=args.batch_size,
            sharded=True,
        )
    if ensemble is None:  # not rank 0: its members went to rank 0
        return
    ensemble.attrs["ranks"] = ctx.world_size
    save_dataset(ensemble, out)
    print(
        f"wrote a {args.members}-member {model.method} forecast of "
        f"{', '.join(model.variables)} at lead times {leads} to {out}"
    )
    if plot is not None:
        from sciml_diffusion.plot import plot_forecast

        plot_forecast(ensemble, path=plot)
        print(f"wrote {plot}")
