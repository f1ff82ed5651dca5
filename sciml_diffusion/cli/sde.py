"""``sciml-diffusion sde ...``: simulate stochastic systems, train latent SDEs, forecast.

Files go through the data layer (:mod:`sciml_diffusion.fields.io`); time series use the
layout of :mod:`sciml_diffusion.sde.series` (``state(sample, time, channel)``, NaN =
missing, ``obs_time(sample, time)`` for irregular times).
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``sde`` command group."""
    parser = groups.add_parser("sde", help="latent SDEs: simulate, train, forecast")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    _add_simulate(commands)
    _add_train(commands)
    _add_forecast(commands)


def _add_simulate(commands) -> None:
    p = commands.add_parser("simulate", help="simulate a stochastic system into a NetCDF file")
    p.add_argument("system", choices=["lorenz", "ou", "double-well"])
    p.add_argument("--samples", type=int, required=True, help="number of sequences")
    p.add_argument("--times", type=int, required=True, help="observation times per sequence")
    p.add_argument("--t-end", type=float, default=1.0, help="length of the window [0, t_end]")
    p.add_argument("--dt", type=float, default=1e-3, help="solver step")
    p.add_argument("--burn-in", type=float, default=0.0, help="time discarded before t = 0")
    p.add_argument("--keep", type=float, default=1.0, help="irregular: fraction of times kept")
    p.add_argument("--missing", type=float, default=0.0, help="probability a value is NaN")
    p.add_argument("--obs-noise", type=float, default=0.0, help="Gaussian observation std")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="system parameter, e.g. b=0.2,0.2,0.2 (lorenz) or theta=1.5 (ou)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .nc file")
    p.set_defaults(func=_simulate)


def _add_train(commands) -> None:
    p = commands.add_parser("train", help="train a latent SDE on a time-series file")
    p.add_argument("--data", required=True, help="time-series .nc file")
    p.add_argument("--variable", default="state", help="the time-series variable")
    p.add_argument("--method", choices=["matching", "adjoint", "backprop"], default="matching")
    p.add_argument("--latent-dim", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--context-dim", type=int, default=32)
    p.add_argument("--diffusion", choices=["elementwise", "constant"], default="elementwise")
    p.add_argument("--decoder-std", type=float, default=None, help="fixed (default: learned)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lr-final", type=float, default=3e-4)
    p.add_argument("--t-samples", type=int, default=4, help="matching: times per sequence")
    p.add_argument("--dt", type=float, default=1e-2, help="adjoint/backprop: solver step")
    p.add_argument("--kl-anneal", type=int, default=0, help="KL warm-up steps (0: none)")
    p.add_argument(
        "--hide-fraction", type=float, default=0.0, help="hide this fraction of slots per step"
    )
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _add_forecast(commands) -> None:
    p = commands.add_parser("forecast", help="ensemble forecasts after each sequence's end")
    p.add_argument("--checkpoint", required=True, help="run directory from 'sde train'")
    p.add_argument("--data", required=True, help="time-series .nc file to condition on")
    p.add_argument("--variable", default="state")
    p.add_argument("--members", type=int, default=16)
    p.add_argument("--horizon", type=int, required=True, help="number of forecast times")
    p.add_argument("--step", type=float, default=None, help="time between forecast times")
    p.add_argument("--dt", type=float, default=1e-2, help="solver step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--out", required=True, help="output .nc file")
    p.set_defaults(func=_forecast)


def _simulate(args: argparse.Namespace) -> None:
    from sciml_diffusion.fields.io import save_dataset
    from sciml_diffusion.sde.systems import SYSTEMS, simulate_dataset

    parameters = _parse_parameters(args.set)
    try:
        system = SYSTEMS[args.system](**parameters)
    except TypeError as error:
        raise ValueError(
            f"unknown parameter for {args.system} in {sorted(parameters)}: {error}"
        ) from None
    ds = simulate_dataset(
        system,
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
    save_dataset(ds, args.out)
    print(f"wrote {args.out}: {args.samples} {args.system} sequences, {args.times} times")


def _train(args: argparse.Namespace) -> None:
    from pathlib import Path

    import torch

    from sciml_diffusion.fields.io import open_dataset
    from sciml_diffusion.sde.latent import LatentSDE
    from sciml_diffusion.sde.series import series_from_dataset
    from sciml_diffusion.sde.train import TrainConfig, load_run, posterior_kind, train

    _set_threads(args.threads)
    ds = open_dataset(args.data)
    series = series_from_dataset(ds, args.variable)
    channels = [str(c) for c in ds["channel"].values] if "channel" in ds.coords else None
    config = TrainConfig(
        method=args.method,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_final=args.lr_final,
        t_samples=args.t_samples,
        dt=args.dt,
        kl_anneal_steps=args.kl_anneal,
        hide_fraction=args.hide_fraction,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    normalizer = None
    if args.resume:
        previous = load_run(args.out, args.device)
        if previous.config.method != args.method:
            raise ValueError(
                f"{args.out} was trained with --method {previous.config.method}; "
                "resume with the same method or use a new --out"
            )
        model, normalizer = previous.model, previous.normalizer
    else:
        if (Path(args.out) / "config.json").exists():
            raise FileExistsError(
                f"{args.out} already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        torch.manual_seed(args.seed)
        span = float((series.end - series.start).median())
        model = LatentSDE(
            data_dim=series.values.shape[-1],
            latent_dim=args.latent_dim,
            hidden=args.hidden,
            context_dim=args.context_dim,
            diffusion=args.diffusion,
            decoder_std=args.decoder_std,
            posterior=posterior_kind(args.method),
            time_scale=span if span > 0 else 1.0,
        ).to(args.device)
    trainer = train(
        model,
        series,
        config,
        normalizer=normalizer,
        run_dir=args.out,
        resume=args.resume,
        channels=channels,
        progress=not args.quiet,
    )
    print(
        f"trained {args.method} for {trainer.step_count} steps "
        f"({trainer.train_seconds:.1f} s); run saved in {args.out}"
    )


def _forecast(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    import xarray as xr

    from sciml_diffusion.fields.io import open_dataset, save_dataset
    from sciml_diffusion.sde.evaluate import forecast
    from sciml_diffusion.sde.series import series_from_dataset
    from sciml_diffusion.sde.train import load_run

    if args.horizon < 1 or args.members < 1:
        raise ValueError(
            f"need --horizon >= 1 and --members >= 1, got {args.horizon}, {args.members}"
        )
    _set_threads(args.threads)
    run = load_run(args.checkpoint, args.device)
    series = series_from_dataset(open_dataset(args.data), args.variable).to(args.device)
    if series.values.shape[-1] != run.model.config["data_dim"]:
        raise ValueError(
            f"the data has {series.values.shape[-1]} channels but the model was trained on "
            f"{run.model.config['data_dim']} ({', '.join(run.channels)})"
        )
    step = args.step if args.step is not None else _median_spacing(series)
    lead = step * torch.arange(1, args.horizon + 1, dtype=series.times.dtype)
    means, samples = forecast(
        run.model, series, lead, args.members, args.dt, args.seed, run.normalizer
    )
    end = series.end.cpu().numpy()
    lead_np = lead.numpy()
    ds = xr.Dataset(
        {
            "state": (("member", "sample", "time", "channel"), samples.cpu().numpy()),
            "mean": (("sample", "time", "channel"), means.mean(0).cpu().numpy()),
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
    ds["state"].attrs["description"] = "forecast members, with observation noise"
    ds["mean"].attrs["description"] = "ensemble mean of the decoded latent forecasts"
    save_dataset(ds, args.out)
    print(f"wrote {args.out}: {args.members} members x {args.horizon} times")


def _set_threads(threads: int | None) -> None:
    import torch

    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
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
        numbers = [float(v) for v in value.split(",")]
        parameters[name] = numbers if len(numbers) > 1 else numbers[0]
    return parameters
