"""Darcy prior experiment: train a joint (a, u) function-space diffusion prior, sample it at
the training resolution and at twice that resolution (no fine-tuning), and compare with
held-out data: PDE residual, radially averaged power spectra, and the fraction of
permeability values near the two phases {3, 12}.

    python experiments/prior_darcy/run.py --config experiments/prior_darcy/quick.json \
        --out runs/prior_darcy_quick

Re-running resumes training from the last checkpoint and reuses generated data.
Writes ``metrics.json`` and figures into ``--out`` and copies them to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from sciml_diffusion.diffusion import Prior, train_prior
from sciml_diffusion.fields import FieldDataset
from sciml_diffusion.pdes import get

PHASES = (3.0, 12.0)
NEAR = 0.75  # |a - phase| below this counts as "near" (1/12 of the jump)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--results", default="docs/results")
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    torch.set_num_threads(config.get("threads", 2))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}

    t0 = time.perf_counter()
    train, test, test_fine = _data(config, out)
    timings["data_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    run = out / "prior"
    trained_steps = _train(train, config, run)
    timings["train_s"] = time.perf_counter() - t0

    prior = Prior.load(run)
    s = config["sample"]
    t0 = time.perf_counter()
    with torch.no_grad():
        gen = prior.sample(s["n"], sampler=s["sampler"], steps=s["steps"], generator=1)
    timings["sample_s"] = time.perf_counter() - t0
    fine_grid = prior.grid.with_shape(2 * config["resolution"])
    t0 = time.perf_counter()
    with torch.no_grad():
        gen_fine = prior.sample(
            s["n_fine"], grid=fine_grid, sampler=s["sampler"], steps=s["steps"], generator=2
        )
    timings["sample_fine_s"] = time.perf_counter() - t0
    gen.save(out / "samples.nc")
    gen_fine.save(out / "samples_2x.nc")

    darcy = get("darcy")
    metrics = {
        "config": config["name"],
        "training_resolution": config["resolution"],
        "held_out": _metrics(darcy, test),
        "generated": _metrics(darcy, gen, reference=test),
        "held_out_2x": _metrics(darcy, test_fine),
        "generated_2x": _metrics(darcy, gen_fine, reference=test_fine),
        "mismatched_pairs": _metrics(darcy, _shuffle_u(test)),
        "noise": {**prior.noise.to_dict(), **_node_variance(prior)},
        "p_mean": _p_mean(prior),
        "trained_steps": trained_steps,
        "final_val_loss": _last_val_loss(run),
        "timings_s": timings,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _figures(out, config["name"], gen, test, gen_fine, test_fine, darcy)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "metrics.json", results / f"prior_darcy_{config['name']}_metrics.json")
    for png in out.glob("prior_darcy_*.png"):
        shutil.copy(png, results / png.name)
    print(json.dumps(metrics, indent=2))


def _data(config, out: Path):
    darcy = get("darcy")
    res, seed = config["resolution"], config["seed"]
    paths = [out / "darcy_train.nc", out / "darcy_test.nc", out / "darcy_test_2x.nc"]
    if all(p.exists() for p in paths):
        return [FieldDataset.open(p) for p in paths]
    n_train, n_test = config["n_train"], config["n_test"]
    data = darcy.generate(n_train + n_test, res, seed=seed)
    train = data.isel(sample=slice(0, n_train))
    test = data.isel(sample=slice(n_train, n_train + n_test))
    fine = darcy.generate(config["n_test_fine"], 2 * res, seed=seed + 1000)
    for ds, p in zip((train, test, fine), paths):
        ds.save(p)
    return train, test, fine


def _train(train: FieldDataset, config: dict, run: Path) -> int:
    """Train up to ``train.steps``, in resumable chunks, stopping once ``train_minutes`` is spent.

    Chunks continue exactly (same weights as one uninterrupted run), so the time budget only
    decides how many steps the quick configuration gets on a shared machine.
    """
    settings, budget = dict(config["train"]), config.get("train_minutes")
    total, chunk = settings["steps"], settings["checkpoint_every"]
    start = time.perf_counter()
    step = _checkpoint_step(run)
    while step < total:
        step = min(total, step + chunk) if budget else total
        resume = (run / "checkpoint.pt").exists()
        train_prior(train, {**settings, "steps": step}, out=run, resume=resume, progress=True)
        if budget and time.perf_counter() - start > 60 * budget:
            break
    return _checkpoint_step(run)


def _checkpoint_step(run: Path) -> int:
    if not (run / "checkpoint.pt").exists():
        return 0
    return int(torch.load(run / "checkpoint.pt", weights_only=True)["step"])


def _node_variance(prior: Prior, draws: int = 2000) -> dict:
    """Sample variance of the training noise at the centre, an edge midpoint and a corner."""
    grid = prior.grid
    n = prior.noise.sample((draws, *grid.shape), grid, torch.Generator().manual_seed(0))
    var = n.double().var(0)
    c = [s // 2 for s in grid.shape]
    return {
        "node_variance_centre": float(var[c[0], c[1]]),
        "node_variance_edge": float(var[0, c[1]]),
        "node_variance_corner": float(var[0, 0]),
        "node_variance_draws": draws,
    }


def _p_mean(prior: Prior) -> float:
    train = prior.config["train"]
    if train.get("p_mean") is not None:
        return float(train["p_mean"])
    return -1.2 + float(np.log(prior.config["sigma_data"]))


def _shuffle_u(ds: FieldDataset) -> FieldDataset:
    """Pairs (a_i, u_{i+1}): how large the residual is when a and u do not belong together."""
    x = ds.to_tensor(["a", "u"])
    x = torch.stack([x[:, 0], x[:, 1].roll(1, 0)], dim=1)
    return FieldDataset.from_tensor(x, variables=["a", "u"], grid=ds.grid)


def _metrics(darcy, ds: FieldDataset, reference: FieldDataset | None = None) -> dict:
    x = ds.to_tensor(["a", "u"]).double()
    residual = darcy.residual(x, ds.grid)
    rms = residual.pow(2).mean(dim=(-2, -1)).sqrt().numpy()
    a = x[:, 0].numpy()
    near = np.zeros_like(a, dtype=bool)
    for phase in PHASES:
        near |= np.abs(a - phase) < NEAR
    out = {
        "samples": len(ds),
        "residual_rms_median": float(np.median(rms)),
        "residual_rms_p10": float(np.percentile(rms, 10)),
        "residual_rms_p90": float(np.percentile(rms, 90)),
        "a_near_phases": float(near.mean()),
        "a_mean": float(a.mean()),
        "u_mean": float(x[:, 1].mean()),
        "u_std": float(x[:, 1].std()),
        "u_boundary_max_abs": float(_boundary(x[:, 1]).abs().max()),
    }
    if reference is not None:
        for i, name in enumerate(("a", "u")):
            ours = radial_spectrum(x[:, i].numpy())
            ref = radial_spectrum(reference.to_tensor(["a", "u"])[:, i].double().numpy())
            out[f"spectrum_log10_error_{name}"] = float(np.mean(np.abs(np.log10(ours / ref))))
    return out


def _boundary(u: torch.Tensor) -> torch.Tensor:
    """The boundary nodes of ``(B, ny, nx)``, flattened per sample."""
    return torch.cat([u[:, 0], u[:, -1], u[:, 1:-1, 0], u[:, 1:-1, -1]], dim=-1)


def radial_spectrum(fields: np.ndarray) -> np.ndarray:
    """Radially averaged power spectrum of ``(B, ny, nx)``, mean over samples, bins 1..n/2-1."""
    b, ny, nx = fields.shape
    centred = fields - fields.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(centred)) ** 2 / (ny * nx) ** 2
    ky, kx = np.meshgrid(np.fft.fftfreq(ny) * ny, np.fft.fftfreq(nx) * nx, indexing="ij")
    k = np.rint(np.hypot(ky, kx)).astype(int)
    kmax = min(ny, nx) // 2
    mean_power = power.mean(0)
    return np.array([mean_power[k == i].mean() for i in range(1, kmax)])


def _last_val_loss(run: Path):
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in lines if "val_loss" in r]
    return vals[-1] if vals else None


def _figures(out: Path, tag: str, gen, test, gen_fine, test_fine, darcy) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # sample grid: 4 generated and 4 held-out (a, u) pairs, plus 2 at 2x resolution
    fig, axes = plt.subplots(4, 5, figsize=(12.5, 10), constrained_layout=True)
    columns = [(gen, i, "generated") for i in range(2)] + [(gen_fine, 0, "generated 2x")]
    columns += [(test, i, "held-out") for i in range(2)]
    for col, (ds, i, title) in enumerate(columns):
        x = ds.to_tensor(["a", "u"])[i]
        for row, (channel, name) in enumerate(((0, "a"), (1, "u"), (0, "a"), (1, "u"))):
            if row >= 2:
                idx = i + 2
                x = ds.to_tensor(["a", "u"])[min(idx, len(ds) - 1)]
            im = axes[row, col].imshow(x[channel], origin="lower", cmap="viridis")
            axes[row, col].set_title(f"{title} {name} ({x.shape[-1]}²)", fontsize=9)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            fig.colorbar(im, ax=axes[row, col], shrink=0.7)
    fig.savefig(out / f"prior_darcy_{tag}_samples.png", dpi=80)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for i, name in enumerate(("a", "u")):
        for ds, label, style in (
            (test, "held-out", "k-"),
            (gen, "generated", "C0--"),
            (test_fine, "held-out 2x", "k:"),
            (gen_fine, "generated 2x", "C1--"),
        ):
            spectrum = radial_spectrum(ds.to_tensor(["a", "u"])[:, i].double().numpy())
            axes[i].loglog(np.arange(1, spectrum.size + 1), spectrum, style, label=label)
        axes[i].set_title(f"radially averaged power spectrum of {name}")
        axes[i].set_xlabel("wavenumber |k|")
        axes[i].legend()
    for ds, label in ((test, "held-out"), (gen, "generated"), (gen_fine, "generated 2x")):
        r = darcy.residual(ds.to_tensor(["a", "u"]).double(), ds.grid)
        rms = r.pow(2).mean(dim=(-2, -1)).sqrt().numpy()
        axes[2].hist(np.log10(rms), bins=20, alpha=0.6, label=label)
    axes[2].set_xlabel("log10 RMS residual of -div(a grad u) - 1")
    axes[2].set_title("PDE residual per sample")
    axes[2].legend()
    fig.savefig(out / f"prior_darcy_{tag}_spectra_residual.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
