"""``sciml-diffusion sde ...``: simulate stochastic systems, train latent SDEs, forecast.

Files go through the data layer (:mod:`sciml_diffusion.fields.io`); time series use the
layout of :mod:`sciml_diffusion.sde.series` (``state(sample, time, channel)``, NaN =
missing, ``obs_time(sample, time)`` for irregular times). Times (``--t-end``, ``--dt``,
``--step``, ``--burn-in``) are in the data's time units.
"""

from __future__ import annotations

import argparse
import math

from sciml_diffusion.cli.checks import (
    check_device,
    check_input_file,
    check_memory,
    check_output_dir,
    check_output_file,
    fraction,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)

__all__ = ["register"]

#: solver steps per sequence above which `sde simulate` asks for --force
MAX_SOLVER_STEPS = 10**8

#: `sde train` options and their defaults (None in the parser, to see what a user gave)
TRAIN_DEFAULTS = {
    "method": "matching",
    "latent_dim": 4,
    "hidden": 64,
    "context_dim": 32,
    "diffusion": "elementwise",
    "decoder_std": None,
    "steps": 1000,
    "batch_size": 64,
    "lr": 3e-3,
    "lr_final": 3e-4,
    "t_samples": 4,
    "dt": 1e-2,
    "kl_anneal": 0,
    "hide_fraction": 0.0,
    "checkpoint_every": 100,
    "seed": 0,
}
#: `sde train` options that a resumed run may change
RESUMABLE = ("steps", "checkpoint_every")
#: option -> where a run folder stores it: ("model" | "train", key)
_STORED = {
    "method": ("train", "method"),
    "latent_dim": ("model", "latent_dim"),
    "hidden": ("model", "hidden"),
    "context_dim": ("model", "context_dim"),
    "diffusion": ("model", "diffusion"),
    "decoder_std": ("model", "decoder_std"),
    "steps": ("train", "steps"),
    "batch_size": ("train", "batch_size"),
    "lr": ("train", "lr"),
    "lr_final": ("train", "lr_final"),
    "t_samples": ("train", "t_samples"),
    "dt": ("train", "dt"),
    "kl_anneal": ("train", "kl_anneal_steps"),
    "hide_fraction": ("train", "hide_fraction"),
    "checkpoint_every": ("train", "checkpoint_every"),
    "seed": ("train", "seed"),
}


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``sde`` command group."""
    parser = groups.add_parser("sde", help="latent SDEs: simulate, train, forecast")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    _add_simulate(commands)
    _add_train(commands)
    _add_forecast(commands)


def _add_simulate(commands) -> None:
    p = commands.add_parser("simulate", help="simulate a stochastic system into a NetCDF file")
    p.add_argument("system", choices=["lorenz", "ou", "double-well"], help="the system")
    p.add_argument("--samples", type=positive_int, required=True, help="number of sequences")
    p.add_argument("--times", type=positive_int, required=True, help="observation times (>= 2)")
    p.add_argument(
        "--t-end", type=positive_float, default=1.0, help="window [0, t_end], in time units"
    )
    p.add_argument("--dt", type=positive_float, default=1e-3, help="solver step, in time units")
    p.add_argument(
        "--burn-in", type=nonnegative_float, default=0.0, help="time discarded before t = 0"
    )
    p.add_argument("--keep", type=fraction, default=1.0, help="fraction of times kept (0, 1]")
    p.add_argument("--missing", type=fraction, default=0.0, help="probability a value is NaN")
    p.add_argument(
        "--obs-noise", type=nonnegative_float, default=0.0, help="Gaussian observation std"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="system parameter, e.g. b=0.2,0.2,0.2 (lorenz) or theta=1.5 (ou)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", required=True, help="output .nc file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--force", action="store_true", help="skip the memory and run-length checks")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_simulate)


def _add_train(commands) -> None:
    d = TRAIN_DEFAULTS
    p = commands.add_parser(
        "train",
        help="train a latent SDE on a time-series file",
        description="Train a latent SDE. With --resume, unset options take the stored run's "
        "values; only --steps, --checkpoint-every, --device and --threads may change.",
    )
    p.add_argument("--data", required=True, help="time-series .nc file")
    p.add_argument("--variable", default="state", help="the time-series variable")
    p.add_argument(
        "--method",
        choices=["matching", "adjoint", "backprop"],
        default=None,
        help=f"training method (default: {d['method']})",
    )
    p.add_argument("--latent-dim", type=int, default=None, help=f"(default: {d['latent_dim']})")
    p.add_argument(
        "--hidden", type=positive_int, default=None, help=f"network width (default: {d['hidden']})"
    )
    p.add_argument(
        "--context-dim", type=positive_int, default=None, help=f"(default: {d['context_dim']})"
    )
    p.add_argument(
        "--diffusion",
        choices=["elementwise", "constant"],
        default=None,
        help=f"(default: {d['diffusion']})",
    )
    p.add_argument(
        "--decoder-std", type=positive_float, default=None, help="fixed (default: learned)"
    )
    p.add_argument("--steps", type=positive_int, default=None, help=f"(default: {d['steps']})")
    p.add_argument(
        "--batch-size", type=positive_int, default=None, help=f"(default: {d['batch_size']})"
    )
    p.add_argument("--lr", type=positive_float, default=None, help=f"(default: {d['lr']})")
    p.add_argument(
        "--lr-final", type=positive_float, default=None, help=f"(default: {d['lr_final']})"
    )
    p.add_argument(
        "--t-samples",
        type=positive_int,
        default=None,
        help=f"matching: times per sequence (default: {d['t_samples']})",
    )
    p.add_argument(
        "--dt",
        type=positive_float,
        default=None,
        help=f"adjoint/backprop: solver step in the data's time units (default: {d['dt']})",
    )
    p.add_argument(
        "--kl-anneal",
        type=nonnegative_int,
        default=None,
        help="KL warm-up steps (default: 0, none)",
    )
    p.add_argument(
        "--hide-fraction",
        type=fraction,
        default=None,
        help="hide this fraction of slots per step (default: 0)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        help=f"steps between checkpoints (default: {d['checkpoint_every']})",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (torch's)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _add_forecast(commands) -> None:
    p = commands.add_parser("forecast", help="ensemble forecasts after each sequence's end")
    p.add_argument("--checkpoint", required=True, help="run folder from 'sde train'")
    p.add_argument("--data", required=True, help="time-series .nc file to condition on")
    p.add_argument("--variable", default="state", help="the time-series variable")
    p.add_argument("--members", type=positive_int, default=16, help="ensemble members")
    p.add_argument(
        "--horizon",
        type=positive_int,
        required=True,
        help="number of forecast times, --step apart (the last at horizon x step time units)",
    )
    p.add_argument(
        "--step",
        type=positive_float,
        default=None,
        help="time between forecast times, in the data's time units (default: the median "
        "spacing of the data)",
    )
    p.add_argument(
        "--dt", type=positive_float, default=1e-2, help="solver step, in the data's time units"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (torch's)")
    p.add_argument("--batch", type=positive_int, default=64, help="sequences forecast at a time")
    p.add_argument("--out", required=True, help="output .nc file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--force", action="store_true", help="skip the memory check")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_forecast)


def _simulate(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from sciml_diffusion.fields.io import save_dataset
    from sciml_diffusion.sde.systems import SYSTEMS, simulate_dataset

    if args.times < 2:
        raise ValueError(f"--times must be >= 2, got {args.times}")
    if args.keep == 0:
        raise ValueError("--keep must be > 0 (the fraction of times kept)")
    out = check_output_file(args.out, overwrite=args.overwrite)
    parameters = _parse_parameters(args.set)
    try:
        system = SYSTEMS[args.system](**parameters)
    except TypeError as error:
        raise ValueError(
            f"unknown parameter for {args.system} in {sorted(parameters)}: {error}"
        ) from None
    steps = math.ceil(args.burn_in / args.dt) + math.ceil(args.t_end / args.dt)
    if steps > MAX_SOLVER_STEPS and not args.force:
        raise ValueError(
            f"--t-end {args.t_end:g} (+ --burn-in {args.burn_in:g}) with --dt {args.dt:g} is "
            f"{steps:.3g} solver steps per sequence, far too long to finish; raise --dt or "
            "lower --t-end, or pass --force"
        )
    check_memory(
        args.samples * args.times * system.dim * 4 * 8,
        f"{args.samples} sequences of {args.times} times",
        force=args.force,
    )
    with tqdm(total=steps, desc=f"simulating {args.system}", disable=args.quiet) as bar:
        ds = simulate_dataset(
            _Counted(system, bar),
            args.samples,
            args.times,
            t_end=args.t_end,
            dt=args.dt,
            burn_in=args.burn_in,
            keep=args.keep,
            missing=args.missing,
            obs_noise=args.obs_noise,
            seed=args.seed,
        )
    save_dataset(ds, out)
    print(f"wrote {out}: {args.samples} {args.system} sequences, {args.times} times")


class _Counted:
    """A system whose drift calls (one per Euler step) advance a progress bar."""

    def __init__(self, system, bar):
        self.system, self.bar = system, bar
        self.noise_type, self.sde_type = system.noise_type, system.sde_type
        self.name, self.channels = system.name, system.channels

    def f(self, t, y):
        self.bar.update(1)
        return self.system.f(t, y)

    def g(self, t, y):
        return self.system.g(t, y)

    def initial_state(self, n, generator=None):
        return self.system.initial_state(n, generator)

    def parameters_dict(self) -> dict:
        return self.system.parameters_dict()


def _train(args: argparse.Namespace) -> None:
    from pathlib import Path

    import torch

    from sciml_diffusion.fields.io import open_dataset
    from sciml_diffusion.sde.latent import LatentSDE
    from sciml_diffusion.sde.series import series_from_dataset
    from sciml_diffusion.sde.train import TrainConfig, load_run, posterior_kind, train

    check_input_file(args.data)
    out = check_output_dir(args.out, inputs=[args.data])
    device = check_device(args.device)
    _set_threads(args.threads)
    resuming = args.resume and (Path(out) / "config.json").exists()
    if args.resume and not resuming:
        print(f"nothing to resume in {out} (no checkpoint yet): starting from step 0")
    if not args.resume and (Path(out) / "config.json").exists():
        raise FileExistsError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    previous = load_run(out, device) if resuming else None
    options = _train_options(args, previous)
    ds = open_dataset(args.data)
    series = series_from_dataset(ds, args.variable)
    channels = [str(c) for c in ds["channel"].values] if "channel" in ds.coords else None
    config = TrainConfig(
        method=options["method"],
        steps=options["steps"],
        batch_size=options["batch_size"],
        lr=options["lr"],
        lr_final=options["lr_final"],
        t_samples=options["t_samples"],
        dt=options["dt"],
        kl_anneal_steps=options["kl_anneal"],
        hide_fraction=options["hide_fraction"],
        seed=options["seed"],
        checkpoint_every=options["checkpoint_every"],
    )
    normalizer = None
    if previous is not None:
        if series.values.shape[-1] != previous.model.config["data_dim"]:
            raise ValueError(
                f"{args.data} has {series.values.shape[-1]} channels but the run in {out} was "
                f"trained on {previous.model.config['data_dim']} ({', '.join(previous.channels)})"
                "; resume with the same data or use a new --out"
            )
        model, normalizer = previous.model, previous.normalizer
    else:
        torch.manual_seed(options["seed"])
        span = float((series.end - series.start).median())
        model = LatentSDE(
            data_dim=series.values.shape[-1],
            latent_dim=options["latent_dim"],
            hidden=options["hidden"],
            context_dim=options["context_dim"],
            diffusion=options["diffusion"],
            decoder_std=options["decoder_std"],
            posterior=posterior_kind(options["method"]),
            time_scale=span if span > 0 else 1.0,
        ).to(device)
    trainer = train(
        model,
        series,
        config,
        normalizer=normalizer,
        run_dir=out,
        resume=previous is not None,
        channels=channels,
        progress=not args.quiet,
    )
    print(
        f"trained {config.method} for {trainer.step_count} steps "
        f"({trainer.train_seconds:.1f} s); run saved in {out}"
    )


def _train_options(args: argparse.Namespace, previous) -> dict:
    """Every training option: the user's, else the stored run's (resume), else the default.

    A resumed run refuses options the user gave that differ from the stored run, except
    :data:`RESUMABLE` ones.
    """
    from dataclasses import asdict

    given = {k: getattr(args, k) for k in TRAIN_DEFAULTS if getattr(args, k) is not None}
    if previous is None:
        return {**TRAIN_DEFAULTS, **given}
    stored_parts = {"model": previous.model.config, "train": asdict(previous.config)}
    stored = {k: stored_parts[part][key] for k, (part, key) in _STORED.items()}
    changed = sorted(k for k, v in given.items() if k not in RESUMABLE and stored[k] != v)
    if changed:
        diffs = ", ".join(f"--{k.replace('_', '-')} {stored[k]} -> {given[k]}" for k in changed)
        raise ValueError(
            f"cannot resume {args.out} with other settings ({diffs}); only --steps, "
            "--checkpoint-every, --device and --threads may change (or use a new --out)"
        )
    return {**stored, **given}


def _forecast(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    import xarray as xr
    from tqdm.auto import tqdm

    from sciml_diffusion.fields.io import open_dataset, save_dataset
    from sciml_diffusion.sde.evaluate import forecast
    from sciml_diffusion.sde.series import series_from_dataset
    from sciml_diffusion.sde.train import load_run

    check_input_file(args.data)
    out = check_output_file(
        args.out, overwrite=args.overwrite, inputs=[args.data, args.checkpoint]
    )
    device = check_device(args.device)
    _set_threads(args.threads)
    run = load_run(args.checkpoint, device)
    series = series_from_dataset(open_dataset(args.data), args.variable).to(device)
    if series.values.shape[-1] != run.model.config["data_dim"]:
        raise ValueError(
            f"the data has {series.values.shape[-1]} channels but the model was trained on "
            f"{run.model.config['data_dim']} ({', '.join(run.channels)})"
        )
    step = args.step if args.step is not None else _median_spacing(series)
    lead = step * torch.arange(1, args.horizon + 1, dtype=series.times.dtype)
    solver_steps = math.ceil(float(lead[-1]) / args.dt) + series.values.shape[1]
    latent = run.model.config["latent_dim"] + series.values.shape[-1]
    check_memory(
        args.members * min(len(series), args.batch) * solver_steps * latent * 4 * 4
        + args.members * len(series) * args.horizon * series.values.shape[-1] * 4 * 3,
        f"{args.members} members x {len(series)} sequences x {args.horizon} times",
        force=args.force,
    )
    means, samples = [], []
    with tqdm(total=len(series), desc="forecasting", unit="seq", disable=args.quiet) as bar:
        for start in range(0, len(series), args.batch):
            index = torch.arange(start, min(start + args.batch, len(series)))
            chunk = series[index.to(series.times.device)]
            m, s = forecast(
                run.model, chunk, lead, args.members, args.dt, args.seed + start, run.normalizer
            )
            means.append(m.cpu())
            samples.append(s.cpu())
            bar.update(len(index))
    means, samples = torch.cat(means, 1), torch.cat(samples, 1)
    end = series.end.cpu().numpy()
    lead_np = lead.numpy()
    ds = xr.Dataset(
        {
            "state": (("member", "sample", "time", "channel"), samples.numpy()),
            "mean": (("sample", "time", "channel"), means.mean(0).numpy()),
            "forecast_time": (("sample", "time"), end[:, None] + lead_np[None, :]),
        },
        coords={
            "member": np.arange(args.members),
            "sample": np.arange(len(series)),
            "time": lead_np,
            "channel": run.channels,
        },
        attrs={"checkpoint": str(args.checkpoint), "method": run.config.method},
    )
    ds["time"].attrs["description"] = "lead time after each sequence's last observation"
    ds["time"].attrs["units"] = "time units of the data"
    ds["state"].attrs["description"] = "forecast members, with observation noise"
    ds["mean"].attrs["description"] = "ensemble mean of the decoded latent forecasts"
    save_dataset(ds, out)
    print(f"wrote {out}: {args.members} members x {args.horizon} times")


def _set_threads(threads: int | None) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)


def _median_spacing(series) -> float:
    import torch

    times = torch.where(series.observed, series.times, torch.nan)
    spacing = torch.diff(times, dim=-1)
    spacing = spacing[torch.isfinite(spacing)]
    if spacing.numel() == 0:
        raise ValueError("cannot infer the forecast step from one-point sequences; pass --step")
    return float(spacing.median())


def _parse_parameters(items: list[str]) -> dict:
    parameters = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        try:
            numbers = [float(v) for v in value.split(",")]
        except ValueError:
            raise ValueError(f"--set {item}: values must be numbers, e.g. theta=1.5") from None
        if not all(map(math.isfinite, numbers)):
            raise ValueError(f"--set {item}: values must be finite")
        parameters[name.strip()] = numbers if len(numbers) > 1 else numbers[0]
    return parameters
