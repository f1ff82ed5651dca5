"""``sciml-diffusion prior train|sample``: train a function-space diffusion prior on a field
data set, and draw samples from a trained prior on any grid of its domain."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sciml_diffusion.cli.checks import (
    CHUNKS_HELP,
    add_speed_flags,
    check_device,
    check_input_file,
    check_memory,
    check_output_dir,
    check_output_file,
    check_plot_path,
    chunks_option,
    parse_resolution,
    parse_variables,
    positive_float,
    positive_int,
)

__all__ = ["register"]

_RESOLUTION_HELP = (
    "nodes per axis: N (square grids), N1,N2 (one per axis, CF order, e.g. lat,lon) or a "
    "scale factor xF (x2 doubles every axis)"
)


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``prior`` command group."""
    parser = groups.add_parser("prior", help="function-space diffusion priors")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train a prior on a field data set",
        description="Train a diffusion prior. Unset options take the TrainConfig defaults "
        "(steps 2000, batch size 16, lr 1e-3, width 32, 12 modes, GRF noise); with --resume "
        "they take the stored run's values, and only --steps, --checkpoint-every, --device, "
        "--bf16 and --compile may differ from them.",
    )
    train.add_argument("--data", required=True, help="training data (.nc, .h5, .zarr)")
    train.add_argument("--variables", default=None, help="comma-separated, e.g. a,u (default all)")
    train.add_argument(
        "--sample-dim",
        default=None,
        help="treat this dim as independent samples, e.g. time for one field per time",
    )
    train.add_argument("--chunks", type=chunks_option, default=None, help=CHUNKS_HELP)
    train.add_argument("--out", required=True, help="run folder (checkpoints, config, log)")
    train.add_argument("--config", default=None, help="JSON file of TrainConfig settings")
    train.add_argument("--steps", type=positive_int, default=None, help="optimiser steps")
    train.add_argument("--batch-size", type=positive_int, default=None, help="fields per step")
    train.add_argument("--lr", type=positive_float, default=None, help="peak learning rate")
    train.add_argument("--width", type=positive_int, default=None, help="backbone channels")
    train.add_argument("--modes", type=positive_int, default=None, help="Fourier modes per axis")
    train.add_argument(
        "--resolution", default=None, help="resample the data first; " + _RESOLUTION_HELP
    )
    train.add_argument("--noise", choices=("grf", "white"), default=None, help="noise process")
    train.add_argument(
        "--checkpoint-every", type=positive_int, default=None, help="steps between checkpoints"
    )
    train.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, ...")
    train.add_argument("--seed", type=int, default=None, help="random seed")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_speed_flags(train)
    train.add_argument(
        "--pin-memory",
        action="store_true",
        default=None,
        help="page-locked host batches for faster copies to the GPU (CUDA only)",
    )
    train.add_argument("--force", action="store_true", help="skip the memory check")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    sample = commands.add_parser("sample", help="draw samples from a trained prior")
    sample.add_argument("--checkpoint", required=True, help="run folder of a trained prior")
    sample.add_argument("--samples", type=positive_int, required=True, help="number of samples")
    sample.add_argument(
        "--resolution", default=None, help="default: the training grid; " + _RESOLUTION_HELP
    )
    sample.add_argument("--sampler", default="heun", help="euler, heun, dpm2m, stochastic, em")
    sample.add_argument("--steps", type=positive_int, default=32, help="noise levels")
    sample.add_argument("--seed", type=int, default=0, help="random seed (member i: seed, i)")
    sample.add_argument(
        "--batch-size", type=positive_int, default=None, help="samples per batch (default all)"
    )
    sample.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    sample.add_argument("--out", required=True, help="output .nc (or .h5/.zarr)")
    sample.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    sample.add_argument("--plot", default=None, help="optional PNG of the first samples")
    sample.add_argument("--force", action="store_true", help="skip the memory check")
    sample.add_argument("--quiet", action="store_true", help="no progress bar")
    add_speed_flags(sample)
    sample.set_defaults(func=_sample)


#: command-line flag -> TrainConfig field
_FLAGS = {
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "width": "width",
    "modes": "n_modes",
    "noise": "noise",
    "checkpoint_every": "checkpoint_every",
    "device": "device",
    "seed": "seed",
    "bf16": "bf16",
    "compile": "compile",
    "pin_memory": "pin_memory",
}


def _train(args: argparse.Namespace) -> None:
    """Train a prior; under ``torchrun``, one DDP replica per process (rank 0 writes)."""
    from sciml_diffusion import distributed
    from sciml_diffusion.data_parallel import decided_on_main
    from sciml_diffusion.diffusion import train_prior
    from sciml_diffusion.fields import FieldDataset

    with distributed.session(_session_device(args)):
        data, out, settings, resume = decided_on_main(_train_plan, args)
        variables = settings.get("variables")
        dataset = FieldDataset.open(data, variables=variables, chunks=args.chunks)
        if args.sample_dim:
            dataset = dataset.stack_samples(args.sample_dim)
        elif dataset.has_time:
            raise ValueError(
                f"{data} has a time dim; pass --sample-dim time to train on one field per time"
            )
        if args.resolution is not None:
            settings["resolution"] = list(parse_resolution(args.resolution, dataset.grid.shape))
        decided_on_main(_check_training_memory, dataset, settings, args.force)
        progress = not args.quiet
        prior = train_prior(dataset, settings, out=out, resume=resume, progress=progress)
        if distributed.is_main():
            print(f"trained {prior}; run folder {out}")


def _session_device(args: argparse.Namespace) -> str:
    """The device the process group is set up for: --device, else the --config's, else auto."""
    if args.device is not None:
        return str(check_device(args.device))
    try:
        device = _read_config(args.config).get("device", "auto") if args.config else "auto"
        return str(check_device(device))
    except (ValueError, OSError):
        return "auto"  # the error is reported by _train_plan, on every rank


def _train_plan(args: argparse.Namespace):
    """Checks before any work (rank 0 decides): data file, run folder, settings, resume."""
    from sciml_diffusion.diffusion.prior import CONFIG_FILE, read_run_config

    data = check_input_file(args.data)
    out = check_output_dir(args.out, inputs=[args.data, args.config])
    if args.device is not None:
        check_device(args.device)
    settings = _read_config(args.config) if args.config else {}
    variables = parse_variables(args.variables)
    if variables:
        settings["variables"] = variables
    for flag, key in _FLAGS.items():
        if getattr(args, flag) is not None:
            settings[key] = getattr(args, flag)
    if not args.resume and (out / CONFIG_FILE).exists():
        raise FileExistsError(
            f"{out} already holds a prior run; pass --resume to continue it (a run stopped "
            "before its first checkpoint restarts from step 0) or choose a new --out"
        )
    resume = args.resume and (out / CONFIG_FILE).exists()
    if args.resume and not resume:
        print(f"nothing to resume in {out} (no checkpoint yet): starting from step 0")
    if resume:
        settings = {**read_run_config(out)["train"], **settings}
    return data, out, settings, resume


def _read_config(path: str) -> dict:
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"--config {path} is a folder; give a JSON file of settings")
    if not file.exists():
        raise FileNotFoundError(f"--config {path}: no such file")
    try:
        settings = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--config {path} is not valid JSON: {error}") from None
    if not isinstance(settings, dict):
        raise ValueError(
            f"--config {path} holds a JSON {type(settings).__name__}; it must be an object "
            '(e.g. {"steps": 400})'
        )
    return settings


def _check_training_memory(dataset, settings: dict, force: bool) -> None:
    """Data (several float32 copies) plus the backbone's activations for one batch."""
    import numpy as np

    shape = settings.get("resolution") or dataset.grid.shape
    nodes = float(np.prod(shape))
    channels = len(settings.get("variables") or dataset.variables)
    rows = settings.get("batch_size", 16) if dataset.is_lazy else len(dataset)  # lazy: per batch
    data = rows * channels * nodes * 4 * 4
    width, batch = settings.get("width", 32), settings.get("batch_size", 16)
    activations = batch * width * nodes * 4 * settings.get("n_layers", 4) * 12
    check_memory(
        data + activations,
        f"training on {len(dataset)} samples on a {'x'.join(map(str, shape))} grid",
        force=force,
    )


def _sample(args: argparse.Namespace) -> None:
    from sciml_diffusion import distributed

    with distributed.session(check_device(args.device)) as ctx:
        _sample_sharded(args, ctx)


def _sample_sharded(args: argparse.Namespace, ctx) -> None:
    """``prior sample`` on every rank: members split by rank, gathered and written on rank 0."""
    import torch

    from sciml_diffusion import distributed
    from sciml_diffusion.diffusion import Prior

    out, plot = distributed.run_on_main(_sample_outputs, args)
    prior = Prior.load(
        args.checkpoint, device=ctx.device, bf16=bool(args.bf16), compile=bool(args.compile)
    )
    shape = parse_resolution(args.resolution, prior.grid.shape)
    grid = prior.grid if shape is None else prior.grid.with_shape(shape)
    distributed.run_on_main(_check_sample_memory, args, prior, grid, ctx)
    with torch.no_grad():
        dataset = prior.sample(
            args.samples,
            grid=grid,
            batch_size=args.batch_size,
            sharded=True,
            sampler=args.sampler,
            steps=args.steps,
            generator=args.seed,
            progress=not args.quiet and ctx.is_main,
        )
    if dataset is None:  # not rank 0: its members went to rank 0
        return
    dataset.xarray.attrs.update(ranks=ctx.world_size)
    dataset.save(out)
    print(f"wrote {args.samples} samples of {', '.join(prior.variables)} on {grid} to {out}")
    if plot:
        from sciml_diffusion.plot import plot_fields

        plot_fields(dataset, samples=min(args.samples, 4), path=plot, title="prior samples")
        print(f"wrote {plot}")


def _sample_outputs(args: argparse.Namespace):
    out = check_output_file(args.out, overwrite=args.overwrite, inputs=[args.checkpoint])
    plot = check_plot_path(args.plot, overwrite=args.overwrite, inputs=[args.checkpoint, out])
    return out, plot


def _check_sample_memory(args: argparse.Namespace, prior, grid, ctx) -> None:
    """One rank's members (the largest shard), in batches of ``--batch-size``."""
    import numpy as np

    from sciml_diffusion import distributed

    members = len(distributed.shard(args.samples, 0, ctx.world_size))
    batch = min(args.batch_size or members, members)
    width = prior.config.get("model", {}).get("width", 32)
    check_memory(
        batch * float(np.prod(grid.shape)) * 4 * (len(prior.variables) * 8 + width * 8)
        + members * float(np.prod(grid.shape)) * len(prior.variables) * 8,
        f"{members} samples in batches of {batch} on a {'x'.join(map(str, grid.shape))} grid",
        force=args.force,
        device=ctx.device,
    )
