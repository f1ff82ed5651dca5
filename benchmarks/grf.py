"""GRF sampling: our spectral sampler versus a dense-Cholesky sampler, per resolution.

Prints one JSON line per (method, resolution): seconds of set-up (spectrum / Cholesky
factorisation), seconds per sample, and peak extra memory in MiB. The dense baseline is
the one published function-space diffusion code uses: an exponential-kernel covariance
``exp(-|x - y| / l)`` over all s^2 nodes, an s^2 x s^2 float32 matrix factorised by
Cholesky. It runs where the matrix fits in ``--dense-max-gb``; otherwise its line says so.

    python benchmarks/grf.py [--resolutions 64 128 256 512] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _memory import PeakMemory  # noqa: E402

from sciml_diffusion.fields import GaussianRandomField, Grid  # noqa: E402


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def spectral(resolution: int, samples: int, device: str) -> dict:
    grid = Grid.regular((resolution, resolution), periodic=True)
    grf = GaussianRandomField(alpha=2.0, tau=3.0)
    gen = torch.Generator(device=device).manual_seed(0)
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        grf.spectrum(grid, device=device)
        _sync(device)
        setup = time.perf_counter() - start
        grf.sample(grid, 1, generator=gen, device=device)  # warm-up
        _sync(device)
        start = time.perf_counter()
        grf.sample(grid, samples, generator=gen, device=device)
        _sync(device)
        per_sample = (time.perf_counter() - start) / samples
    return {"setup_s": setup, "s_per_sample": per_sample, "peak_mb": mem.peak_mb}


def dense_cholesky(resolution: int, samples: int, device: str, length: float = 0.1) -> dict:
    grid = Grid.regular((resolution, resolution), periodic=True)
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        points = grid.mesh(device=device).reshape(2, -1).T
        cov = torch.cdist(points, points).div_(-length).exp_()
        cov.diagonal().add_(1e-5)
        factor = torch.linalg.cholesky(cov)
        del cov
        _sync(device)
        setup = time.perf_counter() - start
        gen = torch.Generator(device=device).manual_seed(0)
        white = torch.randn(grid.size, samples, generator=gen, device=device)
        start = time.perf_counter()
        (factor @ white).T.reshape(samples, resolution, resolution)
        _sync(device)
        per_sample = (time.perf_counter() - start) / samples
    return {"setup_s": setup, "s_per_sample": per_sample, "peak_mb": mem.peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dense-max-gb", type=float, default=2.0)
    args = parser.parse_args()
    meta = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads()}
    for res in args.resolutions:
        ours = spectral(res, args.samples, args.device)
        print(json.dumps({"method": "spectral", "resolution": res, **ours, **meta}), flush=True)
        matrix_gb = (res * res) ** 2 * 4 / 2**30
        if matrix_gb > args.dense_max_gb:
            line = {
                "method": "dense_cholesky",
                "resolution": res,
                "skipped": True,
                "reason": f"covariance matrix needs {matrix_gb:.1f} GiB",
                **meta,
            }
            print(json.dumps(line), flush=True)
            continue
        dense = dense_cholesky(res, args.samples, args.device)
        ratio = {
            "setup_ratio": dense["setup_s"] / ours["setup_s"],
            "per_sample_ratio": dense["s_per_sample"] / ours["s_per_sample"],
            "memory_ratio": dense["peak_mb"] / max(ours["peak_mb"], 1e-3),
        }
        print(
            json.dumps({"method": "dense_cholesky", "resolution": res, **dense, **ratio, **meta}),
            flush=True,
        )


if __name__ == "__main__":
    main()
