"""Calibration of every guidance method against the exact posterior of a GRF prior.

A Gaussian-random-field prior with its exact denoiser (``GaussianPrior``), one truth drawn
from it, point sensors with Gaussian noise: the posterior is known in closed form. For
each method and number of steps, sample an ensemble with ``reconstruct`` and report

- ``mean_error``: ``||ensemble mean - exact mean|| / ||prior mean - exact mean||``;
- ``std_ratio``: mean over nodes (away from the sensors) of ensemble std / exact std;
- ``z_rms``: the ensemble-mean error in the posterior's eigenbasis, each component divided
  by its sampling std ``sqrt(lambda / M)``, root mean square: about 1 for an exact sampler,
  larger by the method's bias (in units of the sampling error of an M-member ensemble);
- ``nfe``, ``vjp``: denoiser forward and backward passes per member; ``seconds``.

Run: ``python experiments/gaussian_posterior/run.py --config <quick|full>.json`` (paths
relative to this folder or absolute).
Writes ``experiments/gaussian_posterior/results/<config>.jsonl``, and the table and plot of
``docs/results/gaussian_posterior.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from sciml_diffusion.diffusion import GRFNoise
from sciml_diffusion.fields import GaussianRandomField, Grid, Observations
from sciml_diffusion.inverse import GaussianPrior, gaussian_posterior, reconstruct

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs" / "results"


def setup(config: dict):
    grid = Grid.regular(tuple(config["grid"]), periodic=True)
    field = GaussianRandomField(**config["field"])
    noise = GRFNoise.unit_variance(grid, **config["noise"])
    prior = GaussianPrior(field, noise, grid, variables=["u"], mean=1.0)
    truth = prior.sample(1, steps=64, generator=config["seed"] + 100)
    obs = Observations.random(
        truth, count=config["sensors"], seed=config["seed"], noise_std=config["noise_std"]
    )
    return prior, obs


def score(prior, obs, ds, exact) -> dict:
    mean, std, cov = exact
    members = ds.sizes["member"]
    ens_mean = torch.as_tensor(ds["u_mean"].values, dtype=torch.float64)
    ens_std = torch.as_tensor(ds["u_std"].values, dtype=torch.float64)
    diff = (ens_mean - mean[0]).reshape(-1)
    values, vectors = torch.linalg.eigh(cov)
    keep = values > 1e-4 * values.max()
    z = (vectors[:, keep].T @ diff) / (values[keep] / members).sqrt()
    inside = std[0] > 0.2 * std[0].max()
    return {
        "mean_error": float(diff.norm() / (mean[0] - 1.0).norm()),
        "std_ratio": float((ens_std[inside] / std[0][inside]).mean()),
        "z_rms": float(z.square().mean().sqrt()),
    }


def run(config: dict, name: str) -> list[dict]:
    torch.set_num_threads(1)
    prior, obs = setup(config)
    exact = gaussian_posterior(prior, obs, covariance=True)
    rows = []
    for method, spec in config["methods"].items():
        for steps in spec["steps"]:
            ds = reconstruct(
                prior,
                obs,
                method,
                members=config["members"],
                steps=steps,
                generator=config["seed"],
                progress=False,
                **spec["options"],
            )
            row = {
                "config": name,
                "method": method,
                "steps": steps,
                **score(prior, obs, ds, exact),
            }
            row.update({k: ds.attrs[k] for k in ("nfe", "vjp", "seconds")})
            row["seconds_per_member"] = ds.attrs["seconds"] / config["members"]
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def sampling_floor(config: dict) -> float:
    """Expected mean_error of an exact sampler with this many members (sampling error only)."""
    prior, obs = setup(config)
    mean, std = gaussian_posterior(prior, obs)
    return float((std.square().sum() / config["members"]).sqrt() / (mean[0] - 1.0).norm())


def write_docs(rows: list[dict], config: dict, name: str) -> None:
    plt = __import__("sciml_diffusion.plot", fromlist=["_pyplot"])._pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for method in config["methods"]:
        sel = [r for r in rows if r["method"] == method]
        cost = [r["nfe"] + r["vjp"] for r in sel]
        axes[0].loglog(cost, [r["mean_error"] for r in sel], "o-", label=method)
        axes[1].loglog(cost, [r["z_rms"] for r in sel], "o-", label=method)
        axes[2].semilogx(cost, [r["std_ratio"] for r in sel], "o-", label=method)
    floor = sampling_floor(config)
    axes[0].axhline(floor, color="k", ls=":", label="exact sampler, same M")
    axes[1].axhline(1.0, color="k", ls=":")
    axes[2].axhline(1.0, color="k", ls=":")
    labels = ["mean error (rel.)", "z_rms (1 = exact)", "ensemble std / exact std"]
    for ax, label in zip(axes, labels):
        ax.set_xlabel("network passes per member (forward + backward)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    DOCS.mkdir(parents=True, exist_ok=True)
    fig.savefig(DOCS / f"gaussian_posterior_{name}.png", dpi=110)
    lines = [
        "| method | steps | NFE | VJP | mean error | z_rms | std ratio | s / member |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['steps']} | {r['nfe']} | {r['vjp']} | "
            f"{r['mean_error']:.3f} | {r['z_rms']:.2f} | {r['std_ratio']:.3f} | "
            f"{r['seconds_per_member']:.4f} |"
        )
    table = "\n".join(lines)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{name}_table.md").write_text(
        f"{table}\n\nSampling floor (exact sampler, {config['members']} members): "
        f"{floor:.3f}. Machine: {platform.machine()}, torch {torch.__version__}, 1 thread.\n"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE / "quick.json"))
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    name = Path(args.config).stem
    rows = run(config, name)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_docs(rows, config, name)


if __name__ == "__main__":
    main()
