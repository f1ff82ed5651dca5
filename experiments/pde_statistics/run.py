"""Pooled statistics of the generated data, ours vs the DiffusionPDE / FunDPS convention.

For each problem and convention, generates ``samples`` pairs at ``resolution`` and writes
one JSON line per variable (pooled mean and std over samples and pixels, with standard
errors from the spread of the per-sample values, and FunDPS's published number) to
``docs/results/pde_statistics_<config>.jsonl``:

    python experiments/pde_statistics/run.py --config experiments/pde_statistics/full.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sciml_diffusion import pdes

ROOT = Path(__file__).resolve().parents[2]

#: FunDPS utils/dataset_prop.py STATS (mean, std) over DiffusionPDE's training sets
FUNDPS = {
    ("poisson", "f"): (0.0, 0.2919494),
    ("poisson", "u"): (9.67226952e-06, 0.00417478),
    ("helmholtz", "f"): (0.0, 0.2844538),
    ("helmholtz", "u"): (1.05050595e-05, 0.00428004),
    ("darcy", "u"): (5.69201936e-03, 3.79030361e-03),
    ("navier_stokes", "w0"): (0.0, 0.26211293),
    ("navier_stokes", "wT"): (0.0, 0.2561266),
}


def pooled(x: np.ndarray) -> dict:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    means = x.mean(axis=1)
    mean = means.mean()
    squares = ((x - mean) ** 2).mean(axis=1)
    std = np.sqrt(squares.mean())
    n = len(x)
    return {
        "mean": mean,
        "mean_se": means.std(ddof=1) / np.sqrt(n),
        "std": std,
        "std_se": squares.std(ddof=1) / np.sqrt(n) / (2 * std),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    out = ROOT / "docs" / "results" / f"pde_statistics_{Path(args.config).stem}.jsonl"
    if out.exists() and not args.overwrite:
        raise SystemExit(f"{out} exists; pass --overwrite to replace it")
    torch.set_num_threads(1)
    lines = []
    for run in config["runs"]:
        problem = pdes.get(run["problem"], convention=run["convention"])
        options = {"batch_size": 8} if run["problem"] == "navier_stokes" else {}
        data = problem.generate(run["samples"], config["resolution"], seed=1, **options)
        for name in run["variables"]:
            stats = pooled(data.xarray[name].values)
            reference = FUNDPS.get((run["problem"], name))
            row = {
                "problem": run["problem"],
                "convention": run["convention"],
                "variable": name,
                "samples": run["samples"],
                "resolution": config["resolution"],
                **{k: float(v) for k, v in stats.items()},
                "fundps_mean": reference[0] if reference else None,
                "fundps_std": reference[1] if reference else None,
            }
            print(json.dumps(row), flush=True)
            lines.append(json.dumps(row))
            out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
