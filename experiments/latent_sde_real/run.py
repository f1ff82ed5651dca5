"""Latent SDEs on a real seasonal series: Nino 1+2 sea-surface temperature, 1950-2010.

Run from the repository root (needs ``pip install -e ".[experiments]"`` for statsmodels)::

    nice -n 5 python experiments/latent_sde_real/run.py --config quick   # ~15 min, 2 CPUs

The user path of docs/latent_sde.md, end to end: the monthly series shipped with
statsmodels is written as a CSV (``prepare.py``), imported with ``sde import`` (months since
1950-01-01), cut into 36-month training windows from 1950-1999; every method trains for the
same CPU-time budget (``time.process_time`` of the single-threaded process, robust to other
jobs on a shared machine; wall time recorded too), with its learning rate decayed to
``lr_final`` over the number of steps that fit the budget (estimated after 20 steps). Then
``sde forecast`` gives 12-month forecasts from every 24-month context window that ends in
2001-12 .. 2009-12 (its own last observation each), and ``sde evaluate`` scores them per
lead against climatology per calendar month and persistence of the last anomaly, both from
the 1950-1999 record only (fair CRPS, spread-skill ratio, 90 % interval coverage).

Writes ``runs/<config>/`` (data, run folders, forecasts, scores), ``summary.json``, and the
figures ``docs/results/latent_sde_real_<config>_{crps,fan}.png``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]

from prepare import elnino_long  # noqa: E402

from sciml_diffusion.cli import main  # noqa: E402
from sciml_diffusion.fields.io import open_dataset  # noqa: E402
from sciml_diffusion.sde import ChannelNormalizer, LatentSDE, series_from_dataset  # noqa: E402
from sciml_diffusion.sde.train import (  # noqa: E402
    TrainConfig,
    Trainer,
    posterior_kind,
    save_run,
)


def cli(*args) -> None:
    code = main([str(a) for a in args])
    if code != 0:
        raise SystemExit(f"command failed ({code}): {' '.join(map(str, args))}")


def import_data(cfg: dict, out: Path) -> dict:
    csv = out / "sst.csv"
    elnino_long().to_csv(csv, index=False)
    base = ["sde", "import", csv, "--time", "date", "--time-unit", "months", "--overwrite"]
    files = {k: out / f"{k}.nc" for k in ("train", "train_record", "record", "test")}
    cli(*base, "--end", cfg["train_end"], "--window", cfg["window"], "--out", files["train"])
    cli(*base, "--end", cfg["train_end"], "--window", 0, "--out", files["train_record"])
    cli(*base, "--window", 0, "--out", files["record"])
    cli(*base, "--start", cfg["test_start"], "--end", cfg["test_end"], "--window",
        cfg["context"], "--stride", cfg["test_stride"], "--out", files["test"])  # fmt: skip
    return files


def train_for_budget(name: str, options: dict, cfg: dict, data: Path, run_dir: Path) -> dict:
    """Train one method for ``budget_seconds`` of process time; returns its record."""
    torch.manual_seed(cfg["seed"])
    ds = open_dataset(data)
    series = series_from_dataset(ds)
    normalizer = ChannelNormalizer.fit(series)
    method = options["method"]
    model = LatentSDE(
        data_dim=series.values.shape[-1],
        posterior=posterior_kind(method),
        time_scale=float((series.end - series.start).median()),
        period=options.get("period"),
        harmonics=options.get("harmonics", 2),
        seasonal_decoder=options.get("seasonal_decoder", False),
        **cfg["model"],
    )
    config = TrainConfig(
        method=method, steps=10**6, dt=options.get("dt", 0.1), seed=cfg["seed"], **cfg["train"]
    )
    trainer = Trainer(model, normalizer.normalize(series), config)
    budget, begin, wall = cfg["budget_seconds"], time.process_time(), time.perf_counter()
    nelbo = []
    while time.process_time() - begin < budget and trainer.step_count < config.steps:
        nelbo.append(trainer.step())
        if trainer.step_count == 20:
            per_step = (time.process_time() - begin) / 20
            config.steps = max(21, int(budget / per_step))
            trainer.rebuild_schedule()
        if trainer.step_count % 100 == 0:
            print(f"{name}: step {trainer.step_count}/{config.steps}, nelbo {nelbo[-1]:.4g}")
    config.steps = trainer.step_count
    save_run(run_dir, trainer, normalizer, [str(c) for c in ds["channel"].values])
    return {
        "method": method,
        "options": options,
        "steps": trainer.step_count,
        "cpu_seconds": time.process_time() - begin,
        "wall_seconds": time.perf_counter() - wall,
        "final_nelbo_mean_last_50": sum(nelbo[-50:]) / len(nelbo[-50:]),
        "lr_final": trainer.optimizer.param_groups[0]["lr"],
        "decoder_std": model.decoder.std.detach().tolist(),
    }


def main_run(config_name: str, only: list[str] | None = None) -> None:
    path = Path(config_name) if config_name.endswith(".json") else HERE / f"{config_name}.json"
    cfg = json.loads(path.read_text())
    config_name = path.stem
    torch.set_num_threads(1)
    out = HERE / "runs" / config_name
    out.mkdir(parents=True, exist_ok=True)
    files = import_data(cfg, out)
    summary = {"config": cfg, "runs": {}}
    if only and (out / "summary.json").is_file():  # add to the runs done before
        summary["runs"] = json.loads((out / "summary.json").read_text())["runs"]
    figures = ROOT / "docs" / "results"
    for name, options in cfg["runs"].items():
        if only and name not in only:
            continue
        slug = name.replace(", ", "_")
        run_dir = out / slug
        shutil.rmtree(run_dir, ignore_errors=True)
        record = train_for_budget(name, options, cfg, files["train"], run_dir)
        forecast, scores = out / f"{slug}_forecast.nc", out / f"{slug}_scores.nc"
        begin = time.perf_counter()
        fan = out / f"{slug}_fan.png"
        plot = ["--truth", files["record"], "--plot", fan, "--plot-samples", 4]
        cli("sde", "forecast", "--checkpoint", run_dir, "--data", files["test"],
            "--horizon", cfg["horizon"], "--members", cfg["members"], "--dt", cfg["forecast_dt"],
            "--seed", cfg["seed"], "--threads", 1, "--out", forecast, "--overwrite", "--quiet",
            *plot)  # fmt: skip
        record["forecast_seconds"] = time.perf_counter() - begin
        cli("sde", "evaluate", "--forecast", forecast, "--truth", files["record"], "--train",
            files["train_record"], "--period", 12, "--out", scores, "--overwrite")  # fmt: skip
        s = open_dataset(scores)
        keys = ("crps", "rmse", "ssr", "coverage")
        record["scores"] = {
            str(m): {key: s[key].isel(method=i).values.tolist() for key in keys}
            for i, m in enumerate(s["method"].values)
        }
        record["lead_time"] = s["lead_time"].values.tolist()
        summary["runs"][name] = record
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    best = min(summary["runs"], key=lambda n: _mean_crps(summary["runs"][n]))
    best_fan = out / f"{best.replace(', ', '_')}_fan.png"
    shutil.copy(best_fan, figures / f"latent_sde_real_{config_name}_fan.png")
    summary["fan_plot_run"] = best
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_crps(summary, figures / f"latent_sde_real_{config_name}_crps.png")
    shutil.copy(out / "summary.json", figures / f"latent_sde_real_{config_name}.json")
    print(f"wrote {out / 'summary.json'}")


def _mean_crps(record: dict) -> float:
    crps = record["scores"][record["method"]]["crps"]
    return sum(crps) / len(crps)


def plot_crps(summary: dict, path: Path) -> None:
    from sciml_diffusion.plot import _pyplot, save_figure

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    first = next(iter(summary["runs"].values()))
    lead = first["lead_time"]
    curves = {name: r["scores"][r["method"]] for name, r in summary["runs"].items()}
    curves["climatology (per month)"] = first["scores"]["climatology"]
    curves["persistence (last anomaly)"] = first["scores"]["persistence"]
    for i, (name, s) in enumerate(curves.items()):
        axes[0].plot(lead, s["crps"], marker="o", ms=3, label=name, color=f"C{i}")
        axes[1].plot(lead, s["coverage"], marker="o", ms=3, label=name, color=f"C{i}")
    axes[0].set_ylabel("fair CRPS (deg C)")
    axes[1].set_ylabel("90 % interval coverage")
    axes[1].axhline(0.9, color="k", lw=0.8, ls="--")
    for ax in axes:
        ax.set_xlabel("lead time (months)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Nino 1+2 SST, 12-month forecasts from 24-month contexts, 2000-2010")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quick", help="quick, full or a .json path")
    parser.add_argument(
        "--only", nargs="+", default=None, help="run only these runs (added to the summary)"
    )
    args = parser.parse_args()
    main_run(args.config, args.only)
