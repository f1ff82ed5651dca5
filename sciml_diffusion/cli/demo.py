"""``sciml-diffusion demo``: the whole inverse-problem workflow on a small Darcy problem.

Hide a held-out Darcy field behind 3 % sensors on the pressure ``u``, reconstruct both the
permeability ``a`` and ``u`` as an MMPS posterior ensemble with a small function-space
prior on ``(a, u)``, and write ``report.md``, ``reconstruction.png`` and ``metrics.json``.

The prior is the small checkpoint shipped in ``sciml_diffusion/cli/demo_prior/``, produced
by this very command with ``--train`` (``sciml-diffusion demo --train``: generate 256
Darcy samples at 32², train with :func:`~sciml_diffusion.diffusion.train_prior`; only the
EMA weights are kept). The held-out field is sample 256 of the same seed, never trained
on. With ``--train`` the whole pipeline runs from scratch. ``--quick`` is a tiny
configuration (seconds) for tests.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

__all__ = ["register", "CONFIGS", "run_demo", "DEMO_PRIOR"]

#: the shipped prior (EMA weights only), made by ``sciml-diffusion demo --train``
DEMO_PRIOR = Path(__file__).resolve().parent / "demo_prior"

#: demo sizes: data, prior and sampling
CONFIGS = {
    "default": dict(
        resolution=32,
        samples=256,
        train=dict(
            width=24,
            n_layers=3,
            n_modes=12,
            steps=1200,
            batch_size=8,
            lr=2e-3,
            warmup=100,
            val_every=400,
            val_samples=16,
            checkpoint_every=400,
        ),
        members=16,
        steps=24,
        iterations=3,
    ),
    "quick": dict(
        resolution=12,
        samples=10,
        train=dict(
            width=8,
            n_layers=1,
            n_modes=4,
            steps=3,
            batch_size=4,
            lr=3e-3,
            warmup=1,
            val_every=3,
            val_samples=2,
            checkpoint_every=3,
        ),
        members=2,
        steps=3,
        iterations=1,
    ),
}


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    demo = groups.add_parser("demo", help="end-to-end Darcy inversion from 3%% sensors on u")
    demo.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    demo.add_argument("--quick", action="store_true", help="tiny configuration (for tests)")
    demo.add_argument(
        "--train", action="store_true", help="generate data and train the prior from scratch"
    )
    demo.add_argument("--fraction", type=float, default=0.03, help="sensor fraction on u")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: fastest on a busy machine)"
    )
    demo.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
    from sciml_diffusion.cli.inverse import check_output

    check_output(out / "report.md", True)
    import torch

    torch.set_num_threads(max(1, args.threads))
    if args.overwrite and (out / "prior").is_dir():
        import shutil

        shutil.rmtree(out / "prior")  # the demo's own prior run, retrained
    size = "quick" if args.quick else "default"
    metrics = run_demo(out, size, args.fraction, args.seed, train=args.train or args.quick)
    print(f"done in {metrics['seconds']['total']:.0f} s: see {out / 'report.md'}")


def _step(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def run_demo(
    out: Path, size: str = "default", fraction: float = 0.03, seed: int = 0, train: bool = True
) -> dict:
    """Run the demo into ``out``; returns the metrics written to ``metrics.json``.

    With ``train=False`` the shipped prior :data:`DEMO_PRIOR` is used (``size="default"``).
    """
    import torch

    from sciml_diffusion import pdes
    from sciml_diffusion.diffusion import Prior, train_prior
    from sciml_diffusion.fields import Observations
    from sciml_diffusion.inverse import reconstruct
    from sciml_diffusion.inverse.report import plot_reconstruction, score_reconstruction

    config = CONFIGS[size]
    out.mkdir(parents=True, exist_ok=True)
    clock = {"start": time.perf_counter()}
    darcy = pdes.get("darcy")
    if train:
        _step(f"1/4 generating {config['samples'] + 1} Darcy samples at {config['resolution']}^2")
        data = darcy.generate(
            config["samples"] + 1, config["resolution"], seed=seed, progress=True
        )
        test = data.isel(sample=[-1])
        clock["data"] = time.perf_counter()
        _step(f"2/4 training a small prior ({config['train']['steps']} steps)")
        settings = dict(config["train"], variables=["a", "u"], seed=seed, device="cpu")
        prior = train_prior(data.isel(sample=slice(0, -1)), settings, out=out / "prior")
        prior_path = out / "prior"
    else:
        _step(f"1/4 generating the held-out Darcy field (sample {config['samples']})")
        # sample i of a data set with seed s is drawn from seed s + i: this is the field the
        # shipped prior never saw (it was trained on samples 0 .. samples-1)
        test = darcy.generate(1, config["resolution"], seed=seed + config["samples"])
        clock["data"] = time.perf_counter()
        _step(f"2/4 loading the shipped prior {DEMO_PRIOR}")
        if not (DEMO_PRIOR / "checkpoint.pt").exists():
            raise FileNotFoundError(f"no shipped prior in {DEMO_PRIOR}; run with --train")
        prior = Prior.load(DEMO_PRIOR)
        prior_path = DEMO_PRIOR
    clock["train"] = time.perf_counter()
    obs = Observations.per_variable(
        test, count=None, fraction=fraction, variables=["u"], exclude_boundary=True, seed=seed + 1
    )
    noise = 0.01 * prior.normalizer.std[prior.variables.index("u")]
    _step(
        f"3/4 reconstructing a and u from {len(obs)} sensors on u (MMPS, "
        f"{config['members']} members, {config['steps']} Heun steps)"
    )
    ds = reconstruct(
        prior,
        obs,
        method="mmps",
        members=config["members"],
        steps=config["steps"],
        generator=seed,
        noise_std=noise,
        iterations=config["iterations"],
        progress=True,
    )
    clock["sample"] = time.perf_counter()
    _step("4/4 scoring and writing the report")
    truth = {v: test.xarray[v].values[0] for v in ("a", "u")}
    scores = score_reconstruction(ds, truth, thresholds={"a": (7.5, 3.0, 12.0)})
    ds.to_netcdf(out / "posterior.nc", engine="h5netcdf")
    plot_reconstruction(ds, truth, path=out / "reconstruction.png", variables=["a", "u"])
    metrics = {
        "config": size,
        "prior": str(prior_path),
        "trained_here": train,
        "sensors_on_u": len(obs),
        "fraction": fraction,
        "assumed_noise_std_u": noise,
        "method": "mmps",
        "members": config["members"],
        "steps": config["steps"],
        "nfe": ds.attrs["nfe"],
        "vjp": ds.attrs["vjp"],
        "scores": scores,
        "torch_threads": torch.get_num_threads(),
        "seconds": {
            "data": clock["data"] - clock["start"],
            "train": clock["train"] - clock["data"],
            "reconstruct": clock["sample"] - clock["train"],
            "total": time.perf_counter() - clock["start"],
        },
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "report.md").write_text(_report(metrics, config))
    return metrics


def _row(name: str, scores: dict) -> str:
    rate = f"{scores['error_rate']:.3f}" if "error_rate" in scores else ""
    spread = scores.get("spread_skill", float("nan"))
    return (
        f"| {name} | {scores['relative_l2']:.3f} | {scores['crps']:.3g} | {spread:.2f} | {rate} |"
    )


def _report(m: dict, config: dict) -> str:
    s, t = m["scores"], m["seconds"]
    origin = "trained by this run" if m["trained_here"] else "shipped with the package"
    return f"""# sciml-diffusion demo: Darcy flow from {m["fraction"]:.0%} sensors on u

The prior is a small function-space diffusion prior on `(a, u)` ({origin}: `{m["prior"]}`),
trained on {config["samples"]} Darcy samples (permeability `a`, pressure `u`,
{config["resolution"]}x{config["resolution"]}). A held-out field was observed at
{m["sensors_on_u"]} random interior nodes of `u` only, and both `a` and `u` were
reconstructed as an ensemble of {m["members"]} members by MMPS ({m["steps"]} Heun steps,
{m["nfe"]} denoiser evaluations and {m["vjp"]} backward passes per member; sensor noise std
assumed {m["assumed_noise_std_u"]:.2e}, 1% of u's spread).

| variable | relative L2 of mean | CRPS | spread / skill | error rate (a > 7.5) |
|---|---:|---:|---:|---:|
{_row("a", s["a"])}
{_row("u", s["u"])}

Spread / skill near 1 means the ensemble's spread matches its error.

Time: data {t["data"]:.0f} s, prior {t["train"]:.0f} s, reconstruction
{t["reconstruct"]:.0f} s, total {t["total"]:.0f} s.

![reconstruction](reconstruction.png)

Files: `posterior.nc` (the ensemble), `metrics.json`. Use the prior on your own sensors:
`sciml-diffusion reconstruct --checkpoint {m["prior"]} --observations OBS.nc --out POST.nc`.
"""
