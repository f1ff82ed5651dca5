"""SDE matching vs torchsde adjoint vs backprop on one stochastic-Lorenz data set.

Run from the repository root::

    python experiments/sde_matching_lorenz/run.py --config quick     # ~15 min, 2 CPU cores
    python experiments/sde_matching_lorenz/run.py --config full      # hours, one GPU

Every method trains the same encoder, prior, diffusion and decoder (same initial weights)
for the same training-time budget; the clock excludes evaluation. ``clock: process`` counts
the CPU time of the (single-threaded) process, which equals wall time on an idle core and
is robust to other jobs on a shared machine; ``clock: wall`` counts wall time (GPU). Wall
time is recorded too. At fixed fractions of the budget the model is scored by
:func:`sciml_diffusion.sde.evaluate.evaluate` on held-out sequences (test NELBO from a
posterior SDE solve, and forecast MSE/CRPS after the window, both given the full test
windows; interpolation MSE at held-out times with 20 % of the slots hidden from the encoder,
whose NELBO is recorded as ``nelbo_gappy``). A second, smaller study recovers OU parameters.

Writes ``results/<config>/curves.jsonl`` (one line per evaluation), ``summary.json`` and
figures ``docs/results/sde_matching_<config>_*.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from sciml_diffusion.sde import (
    ChannelNormalizer,
    LatentSDE,
    ObservedSeries,
    OrnsteinUhlenbeck,
    StochasticLorenz,
    TrainConfig,
    Trainer,
    evaluate,
    ou_parameters,
    save_run,
    series_from_dataset,
    simulate_dataset,
)
from sciml_diffusion.sde.train import posterior_kind

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def load_config(name: str) -> dict:
    path = Path(name) if name.endswith(".json") else HERE / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"no config {path}; use quick, full or a path to a .json file")
    return json.loads(path.read_text())


def lorenz_splits(cfg: dict, seed: int) -> dict:
    """Train sequences (observed window) and test sequences split for the three scores."""
    d = cfg["data"]
    total_times = d["observed_times"] + d["forecast_times"]
    spacing = d["t_observed"] / (d["observed_times"] - 1)
    ds = simulate_dataset(
        StochasticLorenz(b=d["lorenz_b"]),
        d["train_samples"] + d["test_samples"],
        total_times,
        t_end=spacing * (total_times - 1),
        dt=d["solver_dt"],
        obs_noise=d["obs_noise"],
        seed=seed,
    )
    series = series_from_dataset(ds)
    n, k = d["train_samples"], d["observed_times"]
    window = ObservedSeries(series.times[:, :k], series.values[:, :k], series.mask[:, :k])
    future = ObservedSeries(series.times[n:, k:], series.values[n:, k:], series.mask[n:, k:])
    train, test = window[slice(0, n)], window[slice(n, None)]
    generator = torch.Generator().manual_seed(seed + 1)
    keep = torch.rand(test.times.shape, generator=generator) >= d["heldout_fraction"]
    keep[:, 0] = keep[:, -1] = True
    seen, heldout = test.split_mask(keep)
    return {"train": train, "test": test, "seen": seen, "heldout": heldout, "future": future}


class Clock:
    """Accumulates training time on the chosen clock, plus wall time."""

    def __init__(self, kind: str):
        if kind not in ("process", "wall"):
            raise SystemExit(f"clock must be 'process' or 'wall', got {kind!r}")
        self.now = time.process_time if kind == "process" else time.perf_counter
        self.seconds = 0.0
        self.wall = 0.0

    def run(self, fn):
        start, wall = self.now(), time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds += self.now() - start
        self.wall += time.perf_counter() - wall
        return out


def build_model(cfg: dict, data_dim: int, method: str, time_scale: float, device) -> LatentSDE:
    torch.manual_seed(cfg["seed"])  # identical initial weights for the shared networks
    m = cfg["model"]
    return LatentSDE(
        data_dim=data_dim,
        latent_dim=m["latent_dim"],
        hidden=m["hidden"],
        context_dim=m["context_dim"],
        diffusion=m["diffusion"],
        heads=m.get("heads", 4),
        posterior=posterior_kind(method),
        time_scale=time_scale,
    ).to(device)


def train_and_track(cfg, method, data, normalizer, device, out_dir) -> list[dict]:
    t = cfg["train"]
    model = build_model(
        cfg, data["train"].values.shape[-1], method, cfg["data"]["t_observed"], device
    )
    config = TrainConfig(
        method=method,
        steps=t["max_steps"],
        batch_size=t["batch_size"],
        lr=t["lr"],
        lr_final=t["lr"],  # the learning rate is decayed below by training time, not steps
        t_samples=t["t_samples"],
        dt=t["dt"],
        seed=cfg["seed"],
    )
    trainer = Trainer(model, normalizer.normalize(data["train"]).to(device), config)
    clock = Clock(t["clock"])
    budget = t["train_seconds"]
    checkpoints = [f * budget for f in t["eval_fractions"]]
    rows, losses = [], []
    while clock.seconds < budget and trainer.step_count < t["max_steps"]:
        try:
            losses.append(clock.run(trainer.step))
        except FloatingPointError as error:  # recorded, and the method stops here
            print(json.dumps({"method": method, "diverged": str(error)}), flush=True)
            break
        decay = (t["lr_final"] / t["lr"]) ** min(1.0, clock.seconds / budget)
        for group in trainer.optimizer.param_groups:
            group["lr"] = t["lr"] * decay
        if checkpoints and clock.seconds >= checkpoints[0]:
            checkpoints.pop(0)
            rows.append(score(cfg, method, trainer, clock, data, normalizer, losses))
            print(json.dumps(rows[-1]), flush=True)
            losses = []
    if not rows or rows[-1]["step"] != trainer.step_count:
        rows.append(score(cfg, method, trainer, clock, data, normalizer, losses))
        print(json.dumps(rows[-1]), flush=True)
    save_run(out_dir / "runs" / method, trainer, normalizer, ["x", "y", "z"])
    return rows


def score(cfg, method, trainer, clock, data, normalizer, losses) -> dict:
    e = cfg["eval"]
    begin = time.perf_counter()
    options = {"dt": e["dt"], "seed": cfg["seed"] + 7, "batch_size": e["batch_size"]}
    # NELBO and forecasts on the full test windows (the training distribution) ...
    dense = evaluate(
        trainer.model, data["test"], normalizer, future=data["future"], members=e["members"],
        **options,
    )  # fmt: skip
    # ... interpolation with 20 % of the slots hidden from the encoder
    gappy = evaluate(
        trainer.model, data["seen"], normalizer, heldout=data["heldout"],
        members=e["gappy_members"], **options,
    )  # fmt: skip
    return {
        "method": method,
        "step": trainer.step_count,
        "train_seconds": round(clock.seconds, 3),
        "wall_seconds": round(clock.wall, 3),
        "train_nelbo": sum(losses) / max(1, len(losses)),
        **{k: v for k, v in dense.as_dict().items() if k != "interpolation_mse"},
        "interpolation_mse": gappy.interpolation_mse,
        "nelbo_gappy": gappy.nelbo,
        "nelbo_gappy_simulation_free": gappy.nelbo_simulation_free,
        "eval_seconds": round(time.perf_counter() - begin, 2),
    }


def time_to_reach(rows: list[dict], target: float) -> float | None:
    """Training time of the first evaluation with test NELBO <= target."""
    for row in rows:
        if row["nelbo"] <= target:
            return row["train_seconds"]
    return None


def summarize(curves: dict[str, list[dict]]) -> dict:
    summary = {"final": {m: rows[-1] for m, rows in curves.items()}}
    if "adjoint" in curves:
        adjoint = curves["adjoint"][-1]
        target = adjoint["nelbo"]
        reach = {m: time_to_reach(rows, target) for m, rows in curves.items()}
        summary["adjoint_final_nelbo"] = target
        summary["time_to_adjoint_final_nelbo"] = reach
        summary["speedup_vs_adjoint"] = {
            m: (adjoint["train_seconds"] / s if s else None) for m, s in reach.items()
        }
    return summary


def ou_study(cfg: dict, device) -> dict:
    o = cfg["ou"]
    truth = {"theta": o["theta"], "mu": o["mu"], "sigma": o["sigma"]}
    system = OrnsteinUhlenbeck(o["theta"], o["mu"], o["sigma"])
    ds = simulate_dataset(
        system, o["samples"], o["times"], t_end=o["t_end"], dt=1e-3,
        obs_noise=o["obs_noise"], seed=cfg["seed"] + 11,
    )  # fmt: skip
    series = series_from_dataset(ds)
    normalizer = ChannelNormalizer.fit(series)
    x = torch.linspace(
        o["mu"] - 2 * system.stationary_std, o["mu"] + 2 * system.stationary_std, 41
    )
    results = {"truth": truth}
    for method in o["methods"]:
        torch.manual_seed(cfg["seed"])
        model = LatentSDE(
            1, 1, hidden=32, context_dim=16, diffusion="constant",
            posterior=posterior_kind(method), time_scale=o["t_end"],
        ).to(device)  # fmt: skip
        config = TrainConfig(
            method=method, steps=10**6, batch_size=o["batch_size"], lr=o["lr"],
            lr_final=o["lr"], dt=o["dt"], seed=cfg["seed"],
        )  # fmt: skip
        trainer = Trainer(model, normalizer.normalize(series).to(device), config)
        clock = Clock(cfg["train"]["clock"])
        while clock.seconds < o["train_seconds"]:
            clock.run(trainer.step)
            decay = (o["lr_final"] / o["lr"]) ** min(1.0, clock.seconds / o["train_seconds"])
            for group in trainer.optimizer.param_groups:
                group["lr"] = o["lr"] * decay
        recovered = ou_parameters(model, normalizer, x.to(device))
        results[method] = {"steps": trainer.step_count, **recovered}
        print(json.dumps({"ou": method, **results[method]}), flush=True)
    return results


def plot(curves: dict[str, list[dict]], name: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"matching": "C0", "adjoint": "C3", "backprop": "C2"}
    panels = [
        ("train_seconds", "nelbo", "training time [s]", "test NELBO per sequence [nats]"),
        ("step", "nelbo", "iterations", "test NELBO per sequence [nats]"),
        ("train_seconds", "forecast_mse", "training time [s]", "forecast MSE"),
        ("step", "forecast_mse", "iterations", "forecast MSE"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for ax, (x, y, xlabel, ylabel) in zip(axes.flat, panels):
        for method, rows in curves.items():
            ax.plot([r[x] for r in rows], [r[y] for r in rows], "o-", ms=3,
                    color=colors.get(method), label=method)  # fmt: skip
            free = [r.get("nelbo_simulation_free", math.nan) for r in rows]
            if y == "nelbo" and not all(math.isnan(v) for v in free):
                ax.plot([r[x] for r in rows], free, "--", color=colors.get(method),
                        label=f"{method} (simulation-free estimate)")  # fmt: skip
        ax.set_xscale("log")
        values = [r[y] for rows in curves.values() for r in rows]
        ax.set_yscale("log" if min(values) > 0 else "symlog")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.suptitle(f"Latent SDE on stochastic Lorenz ({name} config)")
    fig.tight_layout()
    path = ROOT / "docs" / "results" / f"sde_matching_{name}_curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quick", help="quick, full, or a .json path")
    parser.add_argument("--methods", default=None, help="comma-separated subset of methods")
    parser.add_argument("--skip-ou", action="store_true", help="skip the OU recovery study")
    parser.add_argument(
        "--replot", action="store_true", help="only redraw the figures from curves.jsonl"
    )
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    name = Path(args.config).stem
    if args.replot:
        curves: dict[str, list[dict]] = {}
        for line in (HERE / "results" / name / "curves.jsonl").read_text().splitlines():
            row = json.loads(line)
            curves.setdefault(row["method"], []).append(row)
        print("figures:", *[str(f.relative_to(ROOT)) for f in plot(curves, name)])
        return 0
    torch.set_num_threads(cfg.get("threads", 1))
    device = torch.device(cfg["device"] if cfg["device"] != "cuda" or torch.cuda.is_available()
                          else "cpu")  # fmt: skip
    out_dir = HERE / "results" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    data = lorenz_splits(cfg, cfg["seed"])
    normalizer = ChannelNormalizer.fit(data["train"])
    methods = args.methods.split(",") if args.methods else cfg["train"]["methods"]
    curves = {}
    with open(out_dir / "curves.jsonl", "w") as log:
        for method in methods:
            curves[method] = train_and_track(cfg, method, data, normalizer, device, out_dir)
            for row in curves[method]:
                log.write(json.dumps(row) + "\n")
            log.flush()
    summary = summarize(curves)
    summary["config"] = cfg
    summary["device"] = str(device)
    summary["torch"] = torch.__version__
    if "ou" in cfg and not args.skip_ou:
        summary["ou"] = ou_study(cfg, device)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    figures = plot(curves, name)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    print("figures:", *[str(f.relative_to(ROOT)) for f in figures])
    return 0


if __name__ == "__main__":
    sys.exit(main())
