"""``sciml-diffusion prior train|sample``: train a function-space diffusion prior on a field
data set, and draw samples from a trained prior on any grid of its domain."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``prior`` command group."""
    parser = groups.add_parser("prior", help="function-space diffusion priors")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    train = commands.add_parser("train", help="train a prior on a field data set")
    train.add_argument("--data", required=True, help="training data (.nc, .h5, .zarr)")
    train.add_argument("--variables", default=None, help="comma-separated, e.g. a,u (default all)")
    train.add_argument("--out", required=True, help="run directory (checkpoints, config, log)")
    train.add_argument("--config", default=None, help="JSON file of TrainConfig settings")
    train.add_argument("--steps", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None)
    train.add_argument("--width", type=int, default=None, help="backbone channels")
    train.add_argument("--modes", type=int, default=None, help="Fourier modes per axis")
    train.add_argument("--resolution", type=int, default=None, help="resample data to R^d")
    train.add_argument("--noise", choices=("grf", "white"), default=None)
    train.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1, ...")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    sample = commands.add_parser("sample", help="draw samples from a trained prior")
    sample.add_argument("--checkpoint", required=True, help="run directory of a trained prior")
    sample.add_argument("--samples", type=int, required=True, help="number of samples")
    sample.add_argument("--resolution", type=int, default=None, help="nodes per axis")
    sample.add_argument("--sampler", default="heun", help="euler, heun, dpm2m, stochastic, em")
    sample.add_argument("--steps", type=int, default=32, help="noise levels")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="cpu")
    sample.add_argument("--out", required=True, help="output .nc (or .h5/.zarr)")
    sample.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    sample.add_argument("--plot", default=None, help="optional PNG of the first samples")
    sample.set_defaults(func=_sample)


#: command-line flag -> TrainConfig field
_FLAGS = {
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "width": "width",
    "modes": "n_modes",
    "resolution": "resolution",
    "noise": "noise",
    "device": "device",
    "seed": "seed",
}


def _train(args: argparse.Namespace) -> None:
    from sciml_diffusion.diffusion import train_prior
    from sciml_diffusion.fields import FieldDataset

    settings = {}
    if args.config:
        try:
            settings = json.loads(Path(args.config).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"--config {args.config} is not valid JSON: {error}") from error
    variables = [v.strip() for v in args.variables.split(",")] if args.variables else None
    if variables:
        settings["variables"] = variables
    for flag, key in _FLAGS.items():
        if getattr(args, flag) is not None:
            settings[key] = getattr(args, flag)
    if not Path(args.data).exists():
        raise FileNotFoundError(f"no data file at {args.data}")
    dataset = FieldDataset.open(args.data)
    prior = train_prior(
        dataset, settings, out=args.out, resume=args.resume, progress=not args.quiet
    )
    print(f"trained {prior}; run directory {args.out}")


def _sample(args: argparse.Namespace) -> None:
    import torch

    from sciml_diffusion.diffusion import Prior

    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    prior = Prior.load(args.checkpoint, device=args.device)
    grid = prior.grid if args.resolution is None else prior.grid.with_shape(args.resolution)
    with torch.no_grad():
        dataset = prior.sample(
            args.samples, grid=grid, sampler=args.sampler, steps=args.steps, generator=args.seed
        )
    dataset.save(out)
    print(f"wrote {args.samples} samples of {', '.join(prior.variables)} on {grid} to {out}")
    if args.plot:
        from sciml_diffusion.plot import plot_fields

        plot_fields(dataset, samples=min(args.samples, 4), path=args.plot, title="prior samples")
        print(f"wrote {args.plot}")
