"""Probabilistic forecasting of 2-D Navier–Stokes vorticity: DYffusion, rolling diffusion,
the Gaussian-diffusion baseline, persistence and climatology, scored per lead time.

    nice -n 5 python experiments/forecast_navier_stokes/run.py \
        experiments/forecast_navier_stokes/quick.json

Trajectories come from the package's own generator (``pdes.get(problem)``); the first
``spinup_frames`` of each are dropped. Training and test trajectories are disjoint. Every
test trajectory is forecast from each of ``initial_times`` with ``members`` members and
scored against its own continuation (CRPS, ensemble-mean MSE, spread-skill ratio; uniform
weights on the grid), averaged over initial states. ``variables`` (default vorticity)
names the forecast variables; ``mask`` (optional) a variable of the data whose non-zero
cells (e.g. the cylinder flow's ``solid``) are set to NaN, so that no loss or score sees
them. Writes, for config NAME,
``docs/results/forecast_NAME.json`` (scores, timings, settings), ``..._scores.png`` and
``..._panels.png``; trained runs go to ``experiments/forecast_navier_stokes/runs/NAME``
(rerunning resumes them).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sciml_diffusion import forecast, pdes
from sciml_diffusion.fields import FieldDataset
from sciml_diffusion.forecast.layout import time_step
from sciml_diffusion.metrics import ensemble_scores
from sciml_diffusion.plot import plot_forecast, plot_scores

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parents[1] / "docs" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--replot", action="store_true", help="redraw scores from the JSON")
    args = parser.parse_args()
    config = json.loads(args.config.read_text())
    if args.replot:
        results = json.loads((RESULTS / f"forecast_{config['name']}.json").read_text())
        plot_scores(
            {m: from_table(r, variables(config)[0]) for m, r in results["methods"].items()},
            path=RESULTS / f"forecast_{config['name']}_scores.png",
            title=figure_title(config),
        )
        return
    torch.set_num_threads(int(config.get("threads", 1)))
    name = config["name"]
    start = time.time()
    train, test, data_seconds = make_data(config)
    print(f"data: train {dict(train.xarray.sizes)}, test {dict(test.xarray.sizes)}", flush=True)
    results = {"config": config, "data_seconds": data_seconds, "methods": {}}
    scores, panels = {}, {}
    for method in config["methods"]:
        model, seconds = train_method(method, config, train)
        fc_scores, fc_seconds, example = evaluate(model, test, config)
        scores[method] = fc_scores
        panels[method] = example
        results["methods"][method] = {
            "train_seconds": seconds,
            "seconds_per_forecast": fc_seconds,
            **table(fc_scores),
        }
        print(f"{method}: train {seconds:.0f} s, {fc_seconds:.2f} s/forecast", flush=True)
    for ref in ("persistence", "climatology"):
        ref_scores, ref_seconds, _ = evaluate_reference(ref, train, test, config)
        scores[ref] = ref_scores
        results["methods"][ref] = {"seconds_per_forecast": ref_seconds, **table(ref_scores)}
    results["total_seconds"] = time.time() - start
    results["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"forecast_{name}.json").write_text(json.dumps(results, indent=1))
    plot_scores(scores, path=RESULTS / f"forecast_{name}_scores.png", title=figure_title(config))
    plot_panels(panels, test, config, RESULTS / f"forecast_{name}_panels.png")
    print(json.dumps({m: r.get("crps") for m, r in results["methods"].items()}, indent=1))
    print(f"total {results['total_seconds']:.0f} s")


def make_data(config):
    t0 = time.time()
    problem = pdes.get(config["problem"], **config.get("problem_parameters", {}))
    n_train, n_test = config["train_trajectories"], config["test_trajectories"]
    data = problem.generate(n_train + n_test, config["resolution"], seed=config["seed"])
    ds = data.xarray[variables(config)].isel(time=slice(config["spinup_frames"], None))
    if config.get("mask"):  # solid cells (mask variable != 0) become NaN: left out of losses
        ds = ds.where(data.xarray[config["mask"]] == 0)
    train = FieldDataset(ds.isel(sample=slice(0, n_train)))
    test = FieldDataset(ds.isel(sample=slice(n_train, n_train + n_test)))
    return train, test, time.time() - t0


def variables(config) -> list[str]:
    """The forecast variables: ``config["variables"]``, default vorticity."""
    return list(config.get("variables", ["vorticity"]))


def train_method(method, config, train):
    settings = dict(config["model"], method=method, steps=config["steps"][method])
    settings["seed"] = config["seed"]
    out = HERE / "runs" / config["name"] / method
    resume = (out / "config.json").exists()
    t0 = time.time()
    model = forecast.fit(train, None, settings, out=out, resume=resume, progress=False)
    return model, time.time() - t0


def initial_states(test, config):
    context = config["model"]["context"]
    for t0 in config["initial_times"]:
        yield t0, test.isel(time=slice(t0 - context + 1, t0 + 1))


def evaluate(model, test, config):
    leads, members = config["lead_times"], config["members"]
    rows, seconds, example = [], [], None
    for k, (_, initial) in enumerate(initial_states(test, config)):
        t = time.time()
        ens = model.forecast(initial, leads, members=members, generator=config["seed"] + k)
        seconds.append((time.time() - t) / test.xarray.sizes["sample"])
        rows.append(ensemble_scores(ens, test.xarray))
        example = ens if example is None else example
    return xr.concat(rows, "init").mean("init"), float(np.mean(seconds)), example


def evaluate_reference(name, train, test, config):
    leads, members = config["lead_times"], config["members"]
    rows, seconds = [], []
    for k, (_, initial) in enumerate(initial_states(test, config)):
        t = time.time()
        if name == "persistence":
            step = time_step(train.xarray["time"].values)
            ens = forecast.persistence(initial, leads, step=step)
        else:
            ens = forecast.climatology(train, initial, leads, members, seed=config["seed"] + k)
        seconds.append((time.time() - t) / test.xarray.sizes["sample"])
        rows.append(ensemble_scores(ens, test.xarray))
    return xr.concat(rows, "init").mean("init"), float(np.mean(seconds)), None


def table(scores) -> dict:
    """Scores of the first variable; with several, ``per_variable`` holds each one's."""
    out = _row(scores.isel(variable=0))
    if scores.sizes["variable"] > 1:
        out["per_variable"] = {
            str(v): _row(scores.sel(variable=v)) for v in scores["variable"].values
        }
    return out


def _row(row) -> dict:
    out = {"lead_time": [int(v) for v in row["lead_time"].values]}
    for key in ("crps", "mse", "spread", "ssr"):
        out[key] = [None if np.isnan(v) else round(float(v), 5) for v in row[key].values]
    return out


def figure_title(config) -> str:
    problem = {
        "kolmogorov": "Kolmogorov flow",
        "navier_stokes": "Navier–Stokes",
        "cylinder": "Cylinder flow",
    }.get(config["problem"], config["problem"])
    n = config["resolution"]
    return f"{problem} {variables(config)[0]}, {n}x{n} grid, {config['members']} members"


def from_table(row: dict, variable: str = "vorticity") -> xr.Dataset:
    """Scores of one method back from the results JSON (the first variable)."""
    data = {
        key: (("variable", "lead_time"), [[np.nan if v is None else v for v in row[key]]])
        for key in ("crps", "mse", "spread", "ssr")
    }
    return xr.Dataset(data, coords={"variable": [variable], "lead_time": row["lead_time"]})


def plot_panels(panels, test, config, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    for method, ens in panels.items():
        fig = plot_forecast(ens, test.xarray, leads=4, title=method)
        figures.append((method, fig))
    # one tall image: stack the per-method figures
    images = []
    for _, fig in figures:
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba()))
        plt.close(fig)
    width = max(im.shape[1] for im in images)
    padded = [
        np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=255)
        for im in images
    ]
    stacked = np.concatenate(padded, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, stacked)


if __name__ == "__main__":
    main()
