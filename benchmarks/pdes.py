"""PDE data generation: samples per second of each problem at several resolutions.

Prints one JSON line per (problem, resolution): samples generated, seconds (including the
GRF draws, solves and data-set assembly, excluding file I/O), samples per second, for
the time-dependent problems the integrator steps per sample, and the machine's 1-minute
load average (on a shared machine, other jobs slow every figure down). Steady problems use the
recipe parameters; the time-dependent ones the recipe's physics over a shortened horizon
stated in the line (``final_time``, ``spinup``; for ``cylinder`` one frame interval, 0.02
of the recipe's 0.2), so that the whole run takes minutes on a
laptop CPU: multiply by the recipe's horizon to budget a full data set.

    python benchmarks/pdes.py > docs/results/pdes.jsonl
    python benchmarks/pdes.py --device cuda --problems navier_stokes
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from sciml_diffusion import pdes

#: (problem, resolutions, samples, parameters overriding the recipe defaults)
CASES = (
    ("darcy", (64, 128), 16, {}),
    ("poisson", (64, 128), 16, {}),
    ("helmholtz", (64, 128), 16, {}),
    ("navier_stokes", (64, 128, 256), 4, {}),
    ("kolmogorov", (64, 128), 4, {"spinup": 0.0, "final_time": 1.0, "steps": 10}),
    ("burgers", (256, 1024), 16, {"dt": 2.5e-4}),
    (
        "cylinder",
        (64, 128),
        4,
        {"final_time": 0.02, "steps": 1, "input_frame": 0, "output_frame": 1},
    ),
)


def run_case(name: str, resolution: int, samples: int, parameters: dict, device: str) -> dict:
    """Generate ``samples`` samples once (after a 1-sample warm-up); return the JSON line."""
    problem = pdes.get(name, **parameters)
    options = {"device": device, "batch_size": samples} if hasattr(problem, "spinup") else {}
    problem.generate(1, resolution, seed=0, **options)  # warm-up: caches, FFT plans
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    problem.generate(samples, resolution, seed=1, **options)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    line = {
        "benchmark": "pdes",
        "problem": name,
        "resolution": resolution,
        "samples": samples,
        "seconds": seconds,
        "samples_per_second": samples / seconds,
        "device": device,
        "threads": 1,
        "workers": 1,
        "torch": torch.__version__,
        "load_average_1min": os.getloadavg()[0],
    }
    if hasattr(problem, "time_step"):  # lattice Boltzmann: its own step, from the lattice
        dt = problem.time_step(resolution)[0]
        line.update(integrator_steps=round(problem.times[-1] / dt), dt=dt, batch_size=samples)
    elif hasattr(problem, "spinup"):
        per_save = round(problem.interval / problem.step_size())
        line["integrator_steps"] = per_save * problem.steps + round(
            problem.spinup / problem.step_size()
        )
        line["final_time"] = problem.final_time
        line["spinup"] = problem.spinup
        line["dt"] = problem.step_size()
        line["batch_size"] = samples
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=[c[0] for c in CASES])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for name, resolutions, samples, parameters in CASES:
        if name not in args.problems:
            continue
        for resolution in resolutions:
            line = run_case(name, resolution, samples, parameters, args.device)
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
