"""Sensor design study: designed placement against random placement, round by round.

Two problems, each starting from a few random sensors and adding ``add`` sensors per round
by every criterion of :func:`~sciml_diffusion.inverse.design.suggest_sensors` (and by
uniform random placement), re-scoring the reconstruction after every round:

- ``gaussian``: a GRF prior (:class:`GaussianPrior`) with the exact posterior: design with
  ``exact=True``, score the closed-form posterior mean (relative L2) and its Gaussian CRPS
  (``scoringrules.crps_normal``) against truths drawn from the prior;
- ``darcy``: recover the permeability ``a`` from sensors on the pressure ``u`` with the small
  shipped demo prior (:data:`~sciml_diffusion.cli.demo.DEMO_PRIOR`, 32², trained on Darcy
  samples 0-255 of seed 0) on held-out fields (seeds 256, 257, ...); candidates are the
  interior nodes of ``u`` (the boundary is Dirichlet, ``u = 0``); the MMPS ensemble given
  the current sensors is both scored (relative L2 of the mean, thresholded error rate of
  ``a`` at 7.5, ensemble CRPS) and used to design the next round.

The "sensors saved" ratio: random placement's error with the most sensors, and the number
of sensors designed placement needs for the same error (linear interpolation between
rounds), as ``n_random / n_designed`` (all sensors) and as a ratio of *added* sensors.

Run: ``nice -n 5 python experiments/sensor_design/run.py --config quick.json`` (the Darcy
study samples on CUDA when available, or on ``"device"`` of the config). Writes
``experiments/sensor_design/results/<config>_{gaussian,darcy}.jsonl``, ``<config>_summary.json``
and ``docs/results/sensor_design_<config>.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from sciml_diffusion.fields import Observations
from sciml_diffusion.inverse.design import extend_observations, suggest_sensors

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs" / "results"
METRICS = {"gaussian": ("relative_l2", "crps"), "darcy": ("relative_l2", "error_rate", "crps")}


# ---------------------------------------------------------------------- shared loop
def study(config, criteria, start_obs, score, design, read, log) -> list[dict]:
    """Rounds of design for one field: rows of scores per (criterion, sensors)."""
    rows = []
    first = score(start_obs)
    for criterion in criteria:
        obs, state = start_obs, first
        for r in range(config["rounds"] + 1):
            rows.append({"criterion": criterion, "round": r, "sensors": len(obs), **state[0]})
            log(rows[-1])
            if r == config["rounds"]:
                break
            proposed = design(obs, criterion, r, state[1])
            obs = extend_observations(obs, proposed, read(proposed))
            state = score(obs)
    return rows


def _tagged(log, field: int):
    """``log`` with the field index in every row."""
    return lambda row: log({"field": field, **row})


# ---------------------------------------------------------------------- exact Gaussian case
def gaussian_case(config: dict, criteria, seed: int, log) -> list[dict]:
    import scoringrules as sr

    from sciml_diffusion.diffusion import GRFNoise
    from sciml_diffusion.fields import GaussianRandomField, Grid
    from sciml_diffusion.inverse import GaussianPrior, gaussian_posterior

    grid = Grid.regular(tuple(config["grid"]), periodic=True)
    noise = GRFNoise.unit_variance(grid, **config["noise"])
    prior = GaussianPrior(GaussianRandomField(**config["field"]), noise, grid, mean=1.0)
    rows = []
    for f in range(config["fields"]):
        truth = prior.sample(1, steps=64, generator=seed + 1000 + f)
        field = truth.to_tensor(["u"]).double()  # (1, 1, *grid)
        start = Observations.random(
            truth, count=config["start"], seed=seed + f, noise_std=config["noise_std"]
        )
        g = torch.Generator().manual_seed(seed + f)

        def score(obs, field=field):
            mean, std = gaussian_posterior(prior, obs)
            err = float((mean - field[0]).norm() / (field[0] - 1.0).norm())
            crps = sr.crps_normal(field[0].numpy(), mean.numpy(), std.clamp_min(1e-12).numpy())
            return {"relative_l2": err, "crps": float(np.mean(crps))}, None

        def design(obs, criterion, r, _, f=f):
            return suggest_sensors(
                prior, obs, config["add"], criterion, exact=True, generator=seed + 97 * f + r
            )

        def read(proposed, field=field, g=g):
            values = proposed.operator(grid, ["u"])(field.float())[0, :, 0]
            return values + config["noise_std"] * torch.randn(len(values), generator=g)

        for row in study(config, criteria, start, score, design, read, _tagged(log, f)):
            rows.append({"problem": "gaussian", "field": f, **row})
    return rows


# ---------------------------------------------------------------------- Darcy with the demo prior
def darcy_case(config: dict, criteria, seed: int, log) -> list[dict]:
    from sciml_diffusion import pdes
    from sciml_diffusion.cli.demo import CONFIGS, DEMO_PRIOR
    from sciml_diffusion.diffusion import Prior
    from sciml_diffusion.inverse import reconstruct
    from sciml_diffusion.inverse.report import score_reconstruction

    device = config.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    prior = Prior.load(DEMO_PRIOR, device=device)
    grid = prior.grid
    held_out = CONFIGS["default"]["samples"]  # the prior saw samples 0 .. held_out - 1
    tests = pdes.get("darcy").generate(config["fields"], grid.shape[0], seed=held_out)
    noise = config["noise_fraction"] * prior.normalizer.std[prior.variables.index("u")]
    interior = np.zeros(grid.shape, dtype=bool)
    interior[1:-1, 1:-1] = True
    rows = []
    for f in range(config["fields"]):
        truth = {v: tests.xarray[v].values[f] for v in ("a", "u")}
        u = torch.as_tensor(truth["u"], dtype=torch.float32)[None, None]
        start = Observations.per_variable(
            tests,
            index=f,
            count=config["start"],
            variables=["u"],
            exclude_boundary=True,
            seed=seed + f,
            noise_std=noise,
        )
        g = torch.Generator().manual_seed(seed + f)

        def score(obs, truth=truth):
            ds = reconstruct(
                prior,
                obs,
                members=config["members"],
                steps=config["steps"],
                generator=seed,
                noise_std=noise,
                iterations=config["iterations"],
                device=device,
                progress=False,
            )
            scores = score_reconstruction(ds, truth, thresholds={"a": (7.5, 3.0, 12.0)})
            flat = {f"{k}_{v}": s for v, m in scores.items() for k, s in m.items()}
            flat.update({k: scores["a"][k] for k in METRICS["darcy"]})
            return flat, ds

        def design(obs, criterion, r, ensemble, f=f):
            return suggest_sensors(
                prior,
                obs,
                config["add"],
                criterion,
                candidates=interior,
                ensemble=ensemble,
                noise_std=noise,
                generator=seed + 97 * f + r,
            )

        def read(proposed, u=u, g=g):
            values = proposed.operator(grid, ["u"])(u)[0, :, 0]
            return values + noise * torch.randn(len(values), generator=g)

        for row in study(config, criteria, start, score, design, read, _tagged(log, f)):
            rows.append({"problem": "darcy", "field": f, **row})
    return rows


# ---------------------------------------------------------------------- summary
def curves(rows: list[dict], metric: str) -> dict:
    """criterion -> (sensors, mean metric over fields)."""
    out = {}
    for criterion in dict.fromkeys(r["criterion"] for r in rows):
        mine = [r for r in rows if r["criterion"] == criterion]
        counts = sorted({r["sensors"] for r in mine})
        means = [float(np.mean([r[metric] for r in mine if r["sensors"] == n])) for n in counts]
        out[criterion] = (counts, means)
    return out


def sensors_saved(design: tuple, random: tuple) -> dict:
    """Sensors designed placement needs for random placement's final error."""
    counts, errors = np.asarray(design[0], float), np.asarray(design[1])
    target, n_random = random[1][-1], random[0][-1]
    start = random[0][0]
    below = np.flatnonzero(errors <= target)
    if len(below) == 0:
        return {"target": target, "n_random": n_random, "n_design": None, "ratio": None}
    i = int(below[0])
    if i == 0:
        n = counts[0]
    else:  # linear interpolation between the rounds that straddle the target
        e0, e1 = errors[i - 1], errors[i]
        n = counts[i - 1] + (counts[i] - counts[i - 1]) * (e0 - target) / (e0 - e1)
    added = (n_random - start) / max(n - start, 1e-9)
    return {
        "target": target,
        "n_random": n_random,
        "n_design": float(n),
        "ratio": n_random / n,
        "ratio_added": float(added),
    }


def summarise(rows: list[dict], problem: str) -> dict:
    out = {}
    for metric in METRICS[problem]:
        c = curves(rows, metric)
        out[metric] = {
            "curves": c,
            "saved": {k: sensors_saved(v, c["random"]) for k, v in c.items() if k != "random"},
        }
    return out


def plot(summary: dict, path: Path) -> None:
    from sciml_diffusion.plot import _pyplot, save_figure

    plt = _pyplot()
    panels = [(p, m) for p in summary for m in summary[p]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (problem, metric) in zip(axes[0], panels):
        for criterion, (n, values) in summary[problem][metric]["curves"].items():
            ax.plot(n, values, marker="o", label=criterion)
        ax.set_title(f"{problem}: {metric}" + (" of a" if problem == "darcy" else ""))
        ax.set_xlabel("sensors")
    axes[0][0].legend(fontsize=8)
    save_figure(fig, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quick.json")
    parser.add_argument("--problems", default="gaussian,darcy")
    args = parser.parse_args()
    path = Path(args.config)
    path = path if path.is_absolute() or path.exists() else HERE / path
    config = json.loads(path.read_text())
    name = path.stem
    torch.set_num_threads(1)
    (HERE / "results").mkdir(exist_ok=True)
    cases = {"gaussian": gaussian_case, "darcy": darcy_case}
    summary, timing = {}, {}
    for problem in args.problems.split(","):
        clock = time.perf_counter()
        out = HERE / "results" / f"{name}_{problem}.jsonl"
        with out.open("w") as log:

            def write(row, problem=problem, log=log):
                log.write(json.dumps({"problem": problem, **row}) + "\n")
                log.flush()
                print(
                    problem,
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()},
                    flush=True,
                )

            rows = cases[problem](config[problem], config["criteria"], config["seed"], write)
        summary[problem] = summarise(rows, problem)
        timing[problem] = round(time.perf_counter() - clock, 1)
    meta = {
        "config": name,
        "seconds": timing,
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    (HERE / "results" / f"{name}_summary.json").write_text(
        json.dumps({"meta": meta, **summary}, indent=1)
    )
    plot(summary, DOCS / f"sensor_design_{name}.png")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
