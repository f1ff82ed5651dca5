"""``sciml-diffusion sde ...``: import series, simulate systems, train, forecast, evaluate.

Files go through the data layer (:mod:`sciml_diffusion.fields.io`); time series use the
layout of :mod:`sciml_diffusion.sde.series` (``state(sample, time, channel)``, NaN =
missing, ``obs_time(sample, time)`` for irregular times); a whole record is
``state(time, channel)``. Times (``--t-end``, ``--dt``, ``--step``, ``--burn-in``,
``--period``) are in the data's time units (``sde import`` records them in a
``time_units`` attribute, e.g. ``months since 1950-01-01``).
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
    check_plot_path,
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
    "autonomous": True,
    "heads": 4,
    "period": None,
    "harmonics": 2,
    "seasonal_decoder": False,
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
    "autonomous": ("model", "autonomous"),
    "heads": ("model", "heads"),
    "period": ("model", "period"),
    "harmonics": ("model", "harmonics"),
    "seasonal_decoder": ("model", "seasonal_decoder"),
}


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``sde`` command group."""
    parser = groups.add_parser("sde", help="latent SDEs: simulate, train, forecast")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    _add_import(commands)
    _add_simulate(commands)
    _add_train(commands)
    _add_forecast(commands)
    _add_evaluate(commands)


def _add_import(commands) -> None:
    p = commands.add_parser(
        "import",
        help="a CSV or NetCDF time series as a training file of windows (or one record)",
        description="Read a series from CSV (wide: one column per variable; long: a name "
        "and a value column, with --long) or NetCDF (variables along a time dim), convert "
        "calendar times to --time-unit since 1 January of the first year (or --reference), "
        "and cut it into windows of --window consecutive records every --stride records "
        "(--window 0: the whole record, state(time, channel)). Numeric times are kept as "
        "they are.",
    )
    p.add_argument("file", help="input .csv or .nc")
    p.add_argument("--time", default="time", help="time column (CSV) or dim (NetCDF)")
    p.add_argument(
        "--variables", nargs="+", default=None, help="variables to keep (default: all numeric)"
    )
    p.add_argument(
        "--long",
        nargs=2,
        metavar=("NAME_COLUMN", "VALUE_COLUMN"),
        default=None,
        help="long CSV layout: the column naming the variable and the column of values",
    )
    p.add_argument(
        "--time-unit",
        choices=["days", "months", "years"],
        default="days",
        help="unit for calendar times (months: whole numbers on the 1st of each month)",
    )
    p.add_argument("--reference", default=None, help="reference date (default: YYYY-01-01)")
    p.add_argument("--start", default=None, help="first time kept (a date or a number)")
    p.add_argument("--end", default=None, help="last time kept (a date or a number)")
    p.add_argument(
        "--window", type=nonnegative_int, required=True, help="records per window (0: all)"
    )
    p.add_argument("--stride", type=positive_int, default=1, help="records between windows")
    p.add_argument("--out", required=True, help="output .nc file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_import)


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
    p.add_argument(
        "--time-dependent",
        dest="autonomous",
        action="store_const",
        const=False,
        default=None,
        help="prior drift and diffusion depend on the raw time t (default: autonomous; "
        "only inside the trained span: prefer --period)",
    )
    p.add_argument(
        "--heads", type=positive_int, default=None, help=f"encoder heads (default: {d['heads']})"
    )
    p.add_argument(
        "--period",
        type=positive_float,
        default=None,
        help="seasonal period in the data's time units (12 for months): drift, diffusion "
        "and encoder see the calendar phase (default: none)",
    )
    p.add_argument(
        "--harmonics",
        type=positive_int,
        default=None,
        help=f"sin/cos harmonics of the calendar phase (default: {d['harmonics']})",
    )
    p.add_argument(
        "--seasonal-decoder",
        action="store_const",
        const=True,
        default=None,
        help="the decoder mean also follows the covariates (a seasonal cycle in data space; "
        "the latent SDE then carries the anomalies); needs --period or --covariates",
    )
    p.add_argument(
        "--covariates",
        default=None,
        help="known covariate series, a record .nc (variables along a numeric time): "
        "drift, diffusion and encoder see it, interpolated in time (default: none)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (torch's)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _add_forecast(commands) -> None:
    p = commands.add_parser(
        "forecast",
        help="ensemble forecasts after each sequence's own last observation",
        description="Forecast every sequence (context window) of --data from its own last "
        "observed time: windows may start and end at different times. SDE-matching models "
        "start from the encoder's marginal at the last observation, solver-trained models "
        "from a posterior solve over the window. Output: state(member, sample, lead_time, "
        "channel) with valid_time(sample, lead_time) and init_time(sample).",
    )
    p.add_argument("--checkpoint", required=True, help="run folder from 'sde train'")
    p.add_argument("--data", required=True, help="time-series .nc file to condition on")
    p.add_argument("--variable", default="state", help="the time-series variable")
    p.add_argument("--members", type=positive_int, default=16, help="ensemble members")
    p.add_argument(
        "--context-window",
        type=positive_int,
        default=None,
        help="use only the last N observed slots of each sequence (default: all)",
    )
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
    p.add_argument(
        "--batch",
        type=positive_int,
        default=64,
        help="sequences forecast at a time (memory only: the forecast does not depend on it)",
    )
    p.add_argument("--truth", default=None, help="record .nc to draw in the --plot fan")
    p.add_argument("--plot", default=None, help="PNG/PDF/SVG of the ensemble fan")
    p.add_argument(
        "--plot-samples", type=positive_int, default=3, help="forecasts drawn in --plot"
    )
    p.add_argument("--out", required=True, help="output .nc file")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--force", action="store_true", help="skip the memory check")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_forecast)


def _add_evaluate(commands) -> None:
    p = commands.add_parser(
        "evaluate",
        help="per-lead scores of a forecast against seasonal climatology and persistence",
        description="Fair CRPS, RMSE, spread-skill ratio and interval coverage per lead time "
        "of an 'sde forecast' file against the truth record, side by side with two "
        "references computed from the training record only: climatology per calendar "
        "phase and persistence of the last anomaly.",
    )
    p.add_argument("--forecast", required=True, help="output of 'sde forecast'")
    p.add_argument("--truth", required=True, help="record .nc covering the valid times")
    p.add_argument("--train", required=True, help="training record .nc (for the references)")
    p.add_argument(
        "--period", type=positive_float, required=True, help="seasonal period, in time units"
    )
    p.add_argument(
        "--step", type=positive_float, default=None, help="sampling step (default: median)"
    )
    p.add_argument("--level", type=fraction, default=0.9, help="central interval for coverage")
    p.add_argument("--variable", default="state", help="the time-series variable")
    p.add_argument("--out", required=True, help="scores .nc (dims method, lead_time)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_evaluate)


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
    """Train a latent SDE; under ``torchrun``, one DDP replica per process (rank 0 writes)."""
    from sciml_diffusion import distributed

    try:
        device = str(check_device(args.device))
    except ValueError:
        device = "auto"  # the error is reported by _train_plan, on every rank
    with distributed.session(device):
        _train_here(args)


def _train_plan(args: argparse.Namespace):
    """Checks before any work (rank 0 decides): data file, run folder, device, resume."""
    from pathlib import Path

    check_input_file(args.data)
    out = check_output_dir(args.out, inputs=[args.data])
    device = check_device(args.device)
    resuming = args.resume and (Path(out) / "config.json").exists()
    if args.resume and not resuming:
        print(f"nothing to resume in {out} (no checkpoint yet): starting from step 0")
    if not args.resume and (Path(out) / "config.json").exists():
        raise FileExistsError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    return out, device, resuming


def _train_here(args: argparse.Namespace) -> None:
    import torch

    from sciml_diffusion import distributed
    from sciml_diffusion.data_parallel import decided_on_main
    from sciml_diffusion.fields.io import open_dataset
    from sciml_diffusion.sde.latent import LatentSDE
    from sciml_diffusion.sde.series import series_from_dataset
    from sciml_diffusion.sde.train import TrainConfig, load_run, posterior_kind, train

    out, device, resuming = decided_on_main(_train_plan, args)
    if distributed.context().is_distributed:
        device = distributed.context().device  # this rank's GPU under torchrun
    _set_threads(args.threads)
    previous = load_run(out, device) if resuming else None
    if previous is not None and args.covariates is not None:
        raise ValueError(
            f"the run in {out} keeps its covariate series; resume without --covariates"
        )
    options = _train_options(args, previous)
    covariate_series = _read_covariates(args.covariates) if args.covariates else None
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
            autonomous=options["autonomous"],
            heads=options["heads"],
            period=options["period"],
            harmonics=options["harmonics"],
            covariate_series=covariate_series,
            seasonal_decoder=options["seasonal_decoder"],
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
    if not distributed.is_main():
        return
    print(
        f"trained {config.method} for {trainer.step_count} steps "
        f"({trainer.train_seconds:.1f} s); run saved in {out}"
    )


def _read_covariates(path: str) -> dict:
    """A covariate record file as ``{"times": [...], "values": [[...], ...]}``."""
    import numpy as np

    from sciml_diffusion.fields.io import open_dataset

    check_input_file(path, "--covariates")
    ds = open_dataset(path)
    names = [v for v in ds.data_vars if ds[v].dims and ds[v].dims[0] == "time"]
    if "time" not in ds.coords or not names:
        raise ValueError(
            f"--covariates {path} needs variables along a numeric 'time' coordinate "
            "(write it with 'sde import ... --window 0')"
        )
    columns = [ds[v].values.reshape(ds.sizes["time"], -1) for v in names]
    values = np.concatenate(columns, 1)
    if np.isnan(values).any():
        raise ValueError(f"--covariates {path} has missing values; a covariate must be known")
    return {"times": ds["time"].values.astype(float).tolist(), "values": values.tolist()}


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
    stored = {
        k: stored_parts[part].get(key, TRAIN_DEFAULTS[k]) for k, (part, key) in _STORED.items()
    }
    changed = sorted(k for k, v in given.items() if k not in RESUMABLE and stored[k] != v)
    if changed:
        diffs = ", ".join(f"--{k.replace('_', '-')} {stored[k]} -> {given[k]}" for k in changed)
        raise ValueError(
            f"cannot resume {args.out} with other settings ({diffs}); only --steps, "
            "--checkpoint-every, --device and --threads may change (or use a new --out)"
        )
    return {**stored, **given}


def _forecast(args: argparse.Namespace) -> None:
    from sciml_diffusion import distributed

    with distributed.session(check_device(args.device)) as ctx:
        _forecast_sharded(args, ctx)


def _forecast_outputs(args: argparse.Namespace):
    check_input_file(args.data)
    inputs = [args.data, args.checkpoint, args.truth]
    out = check_output_file(args.out, overwrite=args.overwrite, inputs=inputs)
    plot = check_plot_path(args.plot, overwrite=args.overwrite, inputs=inputs + [args.out])
    if args.truth is not None:
        check_input_file(args.truth, "--truth")
    return out, plot


def _forecast_sharded(args: argparse.Namespace, ctx) -> None:
    """``sde forecast`` on every rank: members split by rank, gathered and written on rank 0.

    Member ``i`` of sequence ``s`` draws from generators seeded by (seed, ``s``, ``i``):
    the file is the same whatever ``--batch`` and the number of ranks.
    """
    import numpy as np
    import torch
    import xarray as xr
    from tqdm.auto import tqdm

    from sciml_diffusion import distributed
    from sciml_diffusion.fields.io import open_dataset, save_dataset
    from sciml_diffusion.sde.evaluate import forecast
    from sciml_diffusion.sde.series import series_from_dataset
    from sciml_diffusion.sde.train import load_run

    out, plot = distributed.run_on_main(_forecast_outputs, args)
    device = ctx.device
    _set_threads(args.threads)
    run = load_run(args.checkpoint, device)
    data = open_dataset(args.data)
    series = series_from_dataset(data, args.variable).to(device)
    if args.context_window is not None:
        series = _last_slots(series, args.context_window)
    if series.values.shape[-1] != run.model.config["data_dim"]:
        raise ValueError(
            f"the data has {series.values.shape[-1]} channels but the model was trained on "
            f"{run.model.config['data_dim']} ({', '.join(run.channels)})"
        )
    step = args.step if args.step is not None else _median_spacing(series)
    lead = step * torch.arange(1, args.horizon + 1, dtype=series.times.dtype)
    solver_steps = math.ceil(float(lead[-1]) / args.dt) + series.values.shape[1]
    latent = run.model.config["latent_dim"] + series.values.shape[-1]
    block = distributed.member_block(args.members)
    largest = len(distributed.shard(args.members, 0, ctx.world_size))
    distributed.run_on_main(
        check_memory,
        largest * min(len(series), args.batch) * solver_steps * latent * 4 * 4
        + args.members * len(series) * args.horizon * series.values.shape[-1] * 4 * 3,
        f"{args.members} members x {len(series)} sequences x {args.horizon} times",
        force=args.force,
    )
    means, samples = [], []
    quiet = args.quiet or not ctx.is_main
    with tqdm(total=len(series), desc="forecasting", unit="seq", disable=quiet) as bar:
        for start in range(0, len(series), args.batch):
            index = torch.arange(start, min(start + args.batch, len(series)))
            chunk = series[index.to(series.times.device)]
            m, s = forecast(
                run.model,
                chunk,
                lead,
                block,
                args.dt,
                args.seed,
                run.normalizer,
                sequences=index.tolist(),
            )
            means.append(m.cpu())
            samples.append(s.cpu())
            bar.update(len(index))
    means, _ = distributed.gather_members(torch.cat(means, 1), block)
    samples, _ = distributed.gather_members(torch.cat(samples, 1), block)
    if samples is None:  # not rank 0: its members went to rank 0
        return
    end = series.end.cpu().double().numpy()
    lead_np = lead.double().numpy()
    units = _time_units(data)
    ds = xr.Dataset(
        {
            "state": (("member", "sample", "lead_time", "channel"), samples.numpy()),
            "mean": (("sample", "lead_time", "channel"), means.mean(0).numpy()),
        },
        coords={
            "member": np.arange(args.members),
            "sample": np.arange(len(series)),
            "lead_time": lead_np,
            "channel": run.channels,
            "valid_time": (("sample", "lead_time"), end[:, None] + lead_np[None, :]),
            "init_time": ("sample", end),
        },
        attrs={
            "checkpoint": str(args.checkpoint),
            "method": run.config.method,
            "seed": args.seed,
            "ranks": ctx.world_size,
        },
    )
    ds["lead_time"].attrs.update(description="time after each sequence's last observation")
    for name in ("lead_time", "valid_time", "init_time"):
        ds[name].attrs["time_units"] = units
    ds["init_time"].attrs["description"] = "each sequence's last observed time"
    ds["state"].attrs["description"] = "forecast members, with observation noise"
    ds["mean"].attrs["description"] = "ensemble mean of the decoded latent forecasts"
    save_dataset(ds, out)
    print(f"wrote {out}: {args.members} members x {args.horizon} times x {len(series)} windows")
    if plot is not None:
        from sciml_diffusion.sde.figures import plot_fan

        truth = open_dataset(args.truth) if args.truth is not None else None
        shown = np.unique(np.linspace(0, len(series) - 1, min(args.plot_samples, len(series))))
        plot_fan(ds, shown.astype(int).tolist(), truth=truth, path=plot)
        print(f"wrote {plot}")


def _last_slots(series, count: int):
    """Keep only each sequence's last ``count`` observed slots."""
    import torch

    observed = series.observed
    from_end = torch.flip(torch.cumsum(torch.flip(observed.int(), [1]), 1), [1])
    keep = observed & (from_end <= count)
    return series.split_mask(keep)[0]


def _time_units(ds) -> str:
    for holder in (ds.attrs, ds["obs_time"].attrs if "obs_time" in ds else {}):
        if "time_units" in holder:
            return str(holder["time_units"])
    if "time" in ds.coords and "time_units" in ds["time"].attrs:
        return str(ds["time"].attrs["time_units"])
    return "time units of the data"


def _import(args: argparse.Namespace) -> None:
    from sciml_diffusion.fields.io import save_dataset
    from sciml_diffusion.sde.windows import cut_windows, record_dataset, windows_dataset

    check_input_file(args.file, "FILE")
    out = check_output_file(args.out, overwrite=args.overwrite, inputs=[args.file])
    raw_times, values, names = _read_table(args)
    times, units = _numeric_times(raw_times, args)
    keep = _time_range(raw_times, times, args)
    times, values = times[keep], values[keep]
    if len(times) < 2:
        raise ValueError("fewer than two times left after --start/--end; widen the range")
    attrs = {"source": str(args.file), "time_units": units}
    if args.window == 0:
        ds = record_dataset(times, values, names, units, attrs=attrs)
        what = f"one record of {len(times)} times"
    else:
        series = cut_windows(times, values, args.window, args.stride)
        ds = windows_dataset(series, names, units, attrs=attrs)
        what = f"{len(series)} windows of {args.window} times"
    save_dataset(ds, out)
    print(f"wrote {out}: {what}, {len(names)} channels ({', '.join(names)}); times in {units}")


def _read_table(args):
    """``(times (N,), values (N, C), names)`` sorted by time, from CSV or NetCDF."""
    import numpy as np

    if args.file.lower().endswith(".csv"):
        frame = _read_csv(args)
        names = [str(c) for c in frame.columns]
        return frame.index.to_numpy(), frame.to_numpy(dtype=np.float64), names
    from sciml_diffusion.fields.io import open_dataset

    ds = open_dataset(args.file)
    if args.time not in ds.dims:
        raise ValueError(
            f"{args.file} has no dim {args.time!r} (dims: {list(ds.dims)}); pass --time"
        )
    names = args.variables or [v for v in ds.data_vars if ds[v].dims == (args.time,)]
    missing = [v for v in names if v not in ds.data_vars]
    if missing or not names:
        raise ValueError(
            f"{args.file}: variables {missing or names} not found as 1-D series along "
            f"{args.time!r}; it has {sorted(ds.data_vars)}"
        )
    ds = ds.sortby(args.time)
    values = np.stack([ds[v].values.astype(np.float64).reshape(-1) for v in names], -1)
    return ds[args.time].values, values, list(names)


def _read_csv(args):
    import pandas as pd

    frame = pd.read_csv(args.file)
    if args.time not in frame.columns:
        raise ValueError(
            f"{args.file} has no column {args.time!r} (columns: {list(frame.columns)}); "
            "pass --time"
        )
    if args.long is not None:
        name, value = args.long
        for column in (name, value):
            if column not in frame.columns:
                raise ValueError(f"{args.file} has no column {column!r} (--long)")
        if frame.duplicated([args.time, name]).any():
            raise ValueError(f"{args.file} has two values of one variable at one time")
        frame = frame.pivot(index=args.time, columns=name, values=value)
    else:
        frame = frame.set_index(args.time)
    if args.variables is not None:
        missing = [v for v in args.variables if v not in frame.columns]
        if missing:
            raise ValueError(f"{args.file}: no variables {missing}; it has {list(frame.columns)}")
        frame = frame[args.variables]
    else:
        frame = frame.select_dtypes("number")
    if frame.shape[1] == 0:
        raise ValueError(f"{args.file} has no numeric columns besides {args.time!r}")
    index = frame.index
    if index.dtype.kind not in "fiu":
        frame.index = pd.to_datetime(index)
    if frame.index.duplicated().any():
        raise ValueError(f"{args.file} has duplicate times; merge them into one row")
    return frame.sort_index()


def _numeric_times(raw, args):
    import numpy as np

    from sciml_diffusion.sde.windows import calendar_to_number

    raw = np.asarray(raw)
    if raw.dtype.kind in "fiu":
        return raw.astype(np.float64), "time units of the input file"
    return calendar_to_number(raw, args.time_unit, args.reference)


def _time_range(raw, times, args):
    """Boolean mask of the times within ``[--start, --end]`` (dates or numbers)."""
    import numpy as np
    import pandas as pd

    keep = np.ones(len(times), dtype=bool)
    numeric = np.asarray(raw).dtype.kind in "fiu"
    for bound, compare in ((args.start, np.greater_equal), (args.end, np.less_equal)):
        if bound is None:
            continue
        if numeric:
            keep &= compare(times, float(bound))
        else:
            keep &= compare(pd.to_datetime(np.asarray(raw)), pd.Timestamp(bound))
    return keep


def _evaluate(args: argparse.Namespace) -> None:
    from sciml_diffusion.fields.io import open_dataset, save_dataset
    from sciml_diffusion.sde.scores import compare_forecasts

    for name, option in (
        (args.forecast, "--forecast"),
        (args.truth, "--truth"),
        (args.train, "--train"),
    ):
        check_input_file(name, option)
    out = check_output_file(
        args.out, overwrite=args.overwrite, inputs=[args.forecast, args.truth, args.train]
    )
    forecast = open_dataset(args.forecast)
    if not {"member", "lead_time"} <= set(forecast.dims) or "valid_time" not in forecast.coords:
        raise ValueError(
            f"{args.forecast} is not an 'sde forecast' output (needs member and lead_time "
            "dims and a valid_time coordinate)"
        )
    scores = compare_forecasts(
        forecast,
        open_dataset(args.truth),
        open_dataset(args.train),
        args.period,
        args.step,
        args.variable,
        args.level,
    )
    save_dataset(scores, out)
    _print_scores(scores)
    print(f"wrote {out}")


def _print_scores(scores) -> None:
    level = int(round(100 * float(scores["coverage"].attrs.get("level", 0.9))))
    for key, label in (
        ("crps", "CRPS (fair)"),
        ("ssr", "spread/skill"),
        ("coverage", f"{level} % coverage"),
    ):
        print(f"{label}:")
        print(f"  {'lead':>6} " + " ".join(f"{str(m):>12}" for m in scores["method"].values))
        for k, lead in enumerate(scores["lead_time"].values):
            row = [float(scores[key].values[i, k]) for i in range(scores.sizes["method"])]
            print(f"  {float(lead):>6g} " + " ".join(f"{v:12.4g}" for v in row))


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
