"""End-to-end smoke test of the command line on one device: every command, tiny and fast.

Runs the whole chain as separate ``python -m sciml_diffusion.cli`` processes, as a user
would, with the GPU flags on (``--bf16``, ``--pin-memory``, lazy ``--chunks``; one
``prior sample --compile``)::

    data make darcy -> prior train (lazy) -> prior sample (bf16, then compile) -> observe
    -> reconstruct (mmps, dps) -> design -> data make navier_stokes -> forecast train (lazy)
    -> forecast run -> sde simulate -> sde train -> sde forecast

Each step prints one JSON line (``command``, ``seconds`` of wall time including the
process start, ``ok``, and a sanity number read back from its output: the last training
loss, or whether the output is finite and its standard deviation) to stdout and appends
it to ``<out>/gpu_smoke.jsonl``. A failing step is recorded (``ok: false`` with the last
lines of its error) and the others still run; a step whose input a failed step should
have made fails too. The exit status is 1 if any step failed::

    python3 benchmarks/gpu_smoke.py --device cuda --out "$OUT"          # on a GPU
    python3 benchmarks/gpu_smoke.py --device cpu --steps 2 --resolution 8 --samples 8

The working files go to a temporary folder (``--workdir`` to keep them). Sizes: Darcy
pairs on ``--resolution``² (default 32), ``--samples`` fields (default 64), ``--steps``
optimiser steps per training (default 100), FNO width 16 with 6 modes; a Navier-Stokes
vorticity data set of 4 trajectories of 33 frames; a Lorenz-63 data set of 32 sequences.
The numbers say that each command runs and produces finite output of a plausible spread;
they are no measure of quality (the models are trained for seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main", "chain"]


def chain(args: argparse.Namespace) -> list[tuple[str, list[str], object]]:
    """The steps: ``(name, CLI arguments, sanity(workdir) -> dict)``, in order."""
    dev, res, n, steps = f"--device {args.device}", args.resolution, args.samples, args.steps
    net = "--width 16 --modes 6"
    recon = "reconstruct --checkpoint prior --observations obs.nc --members 4 --steps 8"
    sample = f"prior sample --checkpoint prior --samples 8 --steps 8 {dev}"
    out = [
        (
            "data make darcy",
            f"data make darcy --samples {n} --resolution {res} --out darcy.nc --no-progress",
            fields("darcy.nc"),
        ),
        (
            "prior train",
            f"prior train --data darcy.nc --out prior --steps {steps} --batch-size 8 {net} "
            f"{dev} --bf16 --pin-memory --chunks 8 --checkpoint-every {steps} --quiet",
            last_loss("prior"),
        ),
        (
            "prior sample",
            f"{sample} --bf16 --out samples.nc --quiet",
            fields("samples.nc"),
        ),
    ]
    if not args.no_compile:
        out.append(
            (
                "prior sample --compile",
                f"{sample} --compile --out samples_compiled.nc --quiet",
                fields("samples_compiled.nc"),
            )
        )
    out += [
        (
            "observe",
            "observe --data darcy.nc --count 20 --noise-std 0.01 --out obs.nc",
            fields("obs.nc"),
        ),
        (
            "reconstruct mmps",
            f"{recon} --method mmps {dev} --bf16 --out post_mmps.nc --quiet",
            fields("post_mmps.nc"),
        ),
        (
            "reconstruct dps",
            f"{recon} --method dps {dev} --bf16 --out post_dps.nc --quiet",
            fields("post_dps.nc"),
        ),
        (
            "design",
            f"design --checkpoint prior --observations obs.nc --add 2 --members 4 --steps 4 "
            f"{dev} --out design.nc --quiet",
            criterion("design.nc"),
        ),
        (
            "data make navier_stokes",
            f"data make navier_stokes --samples 4 --resolution {res} --steps 32 --out ns.nc "
            "--no-progress",
            fields("ns.nc"),
        ),
        (
            "forecast train",
            f"forecast train --data ns.nc --variables vorticity --method {args.forecast_method} "
            f"--context 1 --horizon 2 --steps {steps} --batch-size 8 {net} {dev} --bf16 "
            "--pin-memory --chunks 4 --out forecaster --quiet",
            last_loss("forecaster"),
        ),
        (
            "forecast run",
            f"forecast run --checkpoint forecaster --initial ns.nc --lead-times 1-4 --members 4 "
            f"{dev} --bf16 --out forecast.nc",
            fields("forecast.nc"),
        ),
        (
            "sde simulate",
            "sde simulate lorenz --samples 32 --times 20 --out lorenz.nc --quiet",
            fields("lorenz.nc"),
        ),
        (
            "sde train",
            f"sde train --data lorenz.nc --steps {steps} --batch-size 16 --hidden 32 {dev} "
            "--out sde --quiet",
            last_loss("sde"),
        ),
        (
            "sde forecast",
            f"sde forecast --checkpoint sde --data lorenz.nc --members 4 --horizon 5 {dev} "
            "--out sde.nc --quiet",
            fields("sde.nc"),
        ),
    ]
    return [(name, command.split(), sanity) for name, command, sanity in out]


def fields(name: str):
    """Sanity of an output file: all float values finite (NaN land aside), their std."""

    def check(workdir: Path) -> dict:
        import numpy as np
        import xarray as xr

        with xr.open_dataset(workdir / name) as ds:
            arrays = [
                np.asarray(v.values, np.float64).ravel()
                for v in ds.data_vars.values()
                if np.issubdtype(v.dtype, np.floating)
            ]
        values = np.concatenate(arrays) if arrays else np.zeros(0)
        values = values[~np.isnan(values)]
        finite = bool(values.size and np.isfinite(values).all())
        return {"finite": finite, "std": float(values.std()) if finite else None}

    return check


def criterion(name: str):
    """Sanity of a sensor design: the criterion of the picked sensors, finite."""

    def check(workdir: Path) -> dict:
        import numpy as np
        import xarray as xr

        with xr.open_dataset(workdir / name) as ds:
            values = np.atleast_1d(np.asarray(ds.attrs["criterion_value"], np.float64))
            coords = [np.asarray(ds[c].values, np.float64) for c in ds.coords]
        finite = bool(values.size) and all(np.isfinite(v).all() for v in [values, *coords])
        return {"finite": finite, "criterion": [float(v) for v in values]}

    return check


def last_loss(run: str, keys=("loss", "nelbo")):
    """Sanity of a training run: the last logged loss of each ``log.jsonl``, finite."""

    def check(workdir: Path) -> dict:
        losses = {}
        for log in sorted((workdir / run).rglob("log.jsonl")):
            records = [json.loads(line) for line in log.read_text().splitlines() if line]
            values = [r[k] for r in records for k in keys if isinstance(r.get(k), (int, float))]
            if values:
                losses[str(log.parent.relative_to(workdir))] = float(values[-1])
        finite = bool(losses) and all(math.isfinite(v) for v in losses.values())
        return {"finite": finite, "last_loss": losses}

    return check


def run_step(name, cli_args, sanity, workdir: Path, timeout: float) -> dict:
    """One CLI process; its record (never raises)."""
    command = [sys.executable, "-m", "sciml_diffusion.cli", *cli_args]
    start = time.perf_counter()
    record = {"command": name, "argv": " ".join(cli_args)}
    try:
        done = subprocess.run(
            command, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=_env()
        )
        seconds = time.perf_counter() - start
        ok, error = done.returncode == 0, done.stderr.strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        seconds, ok, error = time.perf_counter() - start, False, [f"timed out after {timeout} s"]
    record.update(seconds=round(seconds, 2), ok=ok)
    if ok:
        try:
            record.update(sanity(workdir))
            record["ok"] = bool(record.get("finite", True))
        except Exception as failure:  # an unreadable output is a failed step, not a crash
            record.update(ok=False, error=[f"{type(failure).__name__}: {failure}"])
    else:
        record["error"] = error
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu")
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder of the JSONL")
    parser.add_argument("--workdir", default=None, help="working files here (a temp folder)")
    parser.add_argument("--resolution", type=int, default=32, help="nodes per axis")
    parser.add_argument("--samples", type=int, default=64, help="Darcy fields")
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps per training")
    parser.add_argument("--forecast-method", default="diffusion", help="forecast train --method")
    parser.add_argument("--no-compile", action="store_true", help="skip prior sample --compile")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per step")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "gpu_smoke.jsonl"
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gpu_smoke_"))
    workdir.mkdir(parents=True, exist_ok=True)
    env_note = {"command": "environment", "device": args.device, **_environment(args.device)}
    records = [env_note]
    print(json.dumps(env_note), flush=True)
    with open(log, "a") as f:
        f.write(json.dumps(env_note) + "\n")
    for name, cli_args, sanity in chain(args):
        record = run_step(name, cli_args, sanity, workdir, args.timeout)
        records.append(record)
        print(json.dumps(record), flush=True)
        with open(log, "a") as f:
            f.write(json.dumps(record) + "\n")
    steps = records[1:]
    summary = {
        "command": "summary",
        "ok": all(r["ok"] for r in steps),
        "failed": [r["command"] for r in steps if not r["ok"]],
        "seconds": round(sum(r["seconds"] for r in steps), 2),
        "workdir": str(workdir),
    }
    print(json.dumps(summary), flush=True)
    with open(log, "a") as f:
        f.write(json.dumps(summary) + "\n")
    return 0 if summary["ok"] else 1


def _env() -> dict:
    """This process's environment with the repository first on ``PYTHONPATH`` (the steps run
    in the working folder, and must import this checkout's package)."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _environment(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__, "python": sys.version.split()[0]}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


if __name__ == "__main__":
    sys.exit(main())
