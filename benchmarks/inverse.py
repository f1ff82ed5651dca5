"""Speed and memory of posterior sampling: seconds per member and peak memory per method.

One JSON line per (resolution, method)::

    python benchmarks/inverse.py                          # CPU, 32^2 and 64^2
    python benchmarks/inverse.py --device cuda --resolutions 64 128 --members 64

A randomly initialised two-channel FNO prior (the cost does not depend on the weights) with
GRF noise samples ``--members`` members in one batch with each guidance method at a fixed
number of Heun steps (``--steps``), observing 3 % of the nodes of channel ``u`` (noise std
0.01 in normalised units). Reported: seconds per member, seconds per step, peak memory
above the start (CPU: resident set; CUDA: allocated), NFE and backward passes per member,
and the ratio of seconds per member to DPS's in the same process. Wall-clock after one
warm-up; on a shared CPU the numbers move with the load. ``--threads`` defaults to 1.
On CPU the peak is the resident set above its value on entry: memory the allocator kept
from an earlier method is reused, so only the first method of a resolution has a
comparable peak — run one ``--methods`` per process for clean CPU peaks (CUDA peaks are
exact). Results of a run are kept in ``docs/results/inverse_bench.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from benchmarks._memory import PeakMemory
from sciml_diffusion.diffusion import GRFNoise, Prior
from sciml_diffusion.diffusion.backbone import ConditionalFNO
from sciml_diffusion.diffusion.precondition import EDMDenoiser
from sciml_diffusion.fields import Grid, Normalizer, Observations
from sciml_diffusion.inverse import reconstruct


def random_prior(n: int, width: int, modes: int, device) -> Prior:
    grid = Grid.regular((n, n))
    torch.manual_seed(0)
    backbone = ConditionalFNO(2, (modes, modes), width=width, n_layers=4)
    denoiser = EDMDenoiser(backbone).to(device).eval()
    noise = GRFNoise.unit_variance(grid, 1.5, 20.0)
    return Prior(denoiser, noise, Normalizer(["a", "u"], [0, 0], [1, 1], 2), grid)


def sensors(grid: Grid) -> Observations:
    rng = np.random.default_rng(0)
    count = max(1, round(0.03 * grid.size))
    nodes = rng.choice(grid.size, count, replace=False)
    index = np.unravel_index(nodes, grid.shape)
    coords = np.stack([c[i] for c, i in zip(grid.coords, index)], axis=1)
    values = rng.standard_normal((count, 1)).astype(np.float32)
    return Observations(coords, values, ["u"], noise_std=0.01, axes=grid.axes)


def measure(prior, obs, method, members, steps, device) -> dict:
    run = dict(members=members, steps=steps, device=device, progress=False)
    reconstruct(prior, obs, method, **{**run, "members": 1, "steps": 2})  # warm-up
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        ds = reconstruct(prior, obs, method, **run)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {
        "seconds_per_member": seconds / members,
        "seconds_per_step": seconds / steps,
        "peak_mb": memory.peak_mb,
        "nfe": ds.attrs["nfe"],
        "vjp": ds.attrs["vjp"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--methods", nargs="+", default=["dps", "fundps", "diffusionpde", "mmps"])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--modes", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    for n in args.resolutions:
        prior = random_prior(n, args.width, args.modes, device)
        obs = sensors(prior.grid)
        baseline = None
        for method in args.methods:
            result = measure(prior, obs, method, args.members, args.steps, device)
            baseline = baseline or (result["seconds_per_member"] if method == "dps" else None)
            record = {
                "bench": "inverse",
                "method": method,
                "resolution": n,
                "members": args.members,
                "steps": args.steps,
                **result,
                "ratio_to_dps": result["seconds_per_member"] / baseline if baseline else None,
                "device": name or str(device),
                "threads": args.threads,
                "width": args.width,
                "torch": torch.__version__,
            }
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
