"""Forecast start for an SDE-matching model: encoder marginal at t_end vs posterior solve.

Run after ``run.py`` from the repository root::

    nice -n 5 python experiments/latent_sde_real/start_speed.py --run "matching, seasonal"

Forecasts the test contexts of the quick config both ways (same members, same prior
noise) and prints the wall time and the mean fair CRPS of each as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sciml_diffusion.fields.io import open_dataset
from sciml_diffusion.metrics import crps_ensemble
from sciml_diffusion.sde import series_from_dataset
from sciml_diffusion.sde.evaluate import forecast_from_states, marginal_at_end, posterior_paths
from sciml_diffusion.sde.train import load_run

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quick")
    parser.add_argument("--run", default="matching, seasonal")
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--dt", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = HERE / "runs" / args.config
    run = load_run(out / args.run.replace(", ", "_"))
    record = open_dataset(out / "record.nc")["state"]
    series = run.normalizer.normalize(series_from_dataset(open_dataset(out / "test.nc")))
    lead = torch.arange(1, 13, dtype=series.times.dtype)
    valid = series.end[:, None].numpy() + lead.numpy()[None, :]
    truth = record.sel(time=valid.ravel()).values.reshape(*valid.shape, -1)
    result = {"run": args.run, "members": args.members, "windows": len(series)}
    for name in ("marginal", "posterior solve"):
        begin = time.perf_counter()
        if name == "marginal":
            states = marginal_at_end(run.model, series, args.members, seed=0)
        else:
            states = posterior_paths(run.model, series, args.members, args.dt, seed=0).at_end
        _, samples = forecast_from_states(run.model, states, series.end, lead, args.dt, seed=0)
        seconds = time.perf_counter() - begin
        samples = run.normalizer.denormalize(samples).numpy()
        crps = np.asarray(crps_ensemble(samples, truth, member_dim=0, fair=True))
        result[name] = {"seconds": round(seconds, 2), "crps": round(float(crps.mean()), 4)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
