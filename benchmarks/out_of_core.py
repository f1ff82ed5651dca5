"""Training a prior from a Zarr store larger than the memory the process may use.

The parent writes a Zarr store of ``--gib`` GiB of 2-D Gaussian-random-field samples (NaN
"land" in one corner, ``--chunk`` samples per chunk), then runs two children, each with
its address space capped by ``resource.setrlimit(RLIMIT_AS, --cap-gib)``:

- ``eager_load``: tries to read the whole store into memory (expected: MemoryError);
- ``train``: opens the store lazily (dask), fits the normaliser in one streaming pass and
  trains the prior reading every batch from disk (``train_lazy``); in the same process,
  the same model trains on the first ``--memory-samples`` samples held in memory, with
  the same batch size (``train_memory``, today's in-memory path). The two alternate
  rounds of 5 steps after one warm-up step each, so the shared machine's load hits both.

One JSON line each: seconds to open and prepare (streaming statistics pass), batch
reads/s of the reader alone, training steps/s and samples/s, and the child's peak RSS
(``getrusage``'s ``ru_maxrss``) and peak address space (``VmPeak``), over its whole life
including imports::

    python benchmarks/out_of_core.py                     # 4.5 GiB store, 1.5 GiB cap, 64^2
    python benchmarks/out_of_core.py --gib 0.2 --steps 5 # a quick look

The cap is on address space, which counts torch's and the libraries' mappings (about
0.9 GiB after ``import torch``, of which 0.34 GiB resident), so the cap must exceed that;
the store is three times the cap, so the process cannot hold it. Children run with one
torch thread and ``MALLOC_ARENA_MAX=2`` (glibc reserves 64 MiB of address space per
malloc arena otherwise). The store is deleted afterwards (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sciml_diffusion.fields import FieldDataset, GaussianRandomField, Grid  # noqa: E402

#: training settings shared by the lazy and in-memory runs (val_fraction 0: every sample trains)
MODEL = dict(width=16, n_layers=2, n_modes=12, warmup=1, val_fraction=0.0, device="cpu")
#: training steps per turn when the lazy and in-memory runs alternate
ROUND = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.5, help="size of the store (float32)")
    parser.add_argument("--cap-gib", type=float, default=1.5, help="RLIMIT_AS of the child")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=32, help="samples per Zarr chunk")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--memory-samples", type=int, default=1024)
    parser.add_argument("--reads", type=int, default=50, help="batches timed for the reader")
    parser.add_argument("--dir", default=None, help="where to write the store (default: tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the store")
    parser.add_argument("--child", choices=["train", "eager"], help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        torch.set_num_threads(1)
        print(json.dumps(CHILDREN[args.child](args)), flush=True)
        return
    workdir = Path(tempfile.mkdtemp(prefix="out_of_core.", dir=args.dir))
    store = workdir / "fields.zarr"
    try:
        seconds = write_store(store, args)
        size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        common = {
            "resolution": args.resolution,
            "store_gib": round(args.gib, 3),
            "store_disk_gib": round(size / 2**30, 3),
            "chunk": args.chunk,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared)",
        }
        print(json.dumps({"what": "write_store", **common, "seconds": round(seconds, 1)}))
        eager = run_child("eager", store, args.cap_gib, sys.argv[1:])
        print(json.dumps({"what": "eager_load", **common, **eager}), flush=True)
        trained = run_child("train", store, args.cap_gib, sys.argv[1:])
        shared = {k: v for k, v in trained.items() if k not in ("lazy", "memory")}
        for name in ("lazy", "memory"):
            record = {"what": f"train_{name}", **common, **trained.get(name, {}), **shared}
            print(json.dumps(record), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------- store
def write_store(path: Path, args) -> float:
    """Fields appended block by block (the parent never holds the whole store).

    A bank of 512 GRF samples (alpha 2, tau 5 on the periodic unit square) is drawn once;
    each block is the bank shifted by a random periodic translation and sign, which keeps
    the GRF's law (stationary, symmetric) and costs far less than fresh draws.
    """
    n_total = int(args.gib * 2**30 / (4 * args.resolution**2))
    grid = Grid.regular((args.resolution, args.resolution), periodic=True)
    gen = torch.Generator().manual_seed(0)
    bank = GaussianRandomField(2.0, 5.0, 3.0).sample(grid, 512, gen).numpy()
    land = np.zeros(grid.shape, bool)
    land[: args.resolution // 4, : args.resolution // 4] = True
    rng = np.random.default_rng(0)
    start, written = time.perf_counter(), 0
    while written < n_total:
        n = min(len(bank), n_total - written)
        shift = tuple(int(s) for s in rng.integers(0, args.resolution, 2))
        values = 1.0 + rng.choice([-1.0, 1.0]) * np.roll(bank[:n], shift, axis=(1, 2))
        values[:, land] = np.nan
        ds = FieldDataset.from_tensor(torch.as_tensor(values[:, None]), ["u"], grid).xarray
        ds = ds.assign_coords(sample=np.arange(written, written + n))
        ds["u"].encoding = {"chunks": (args.chunk, *grid.shape)}
        if written == 0:
            ds.to_zarr(path, mode="w", consolidated=False)
        else:
            ds.to_zarr(path, append_dim="sample", consolidated=False)
        written += n
    return time.perf_counter() - start


# ---------------------------------------------------------------------- children
def run_child(child: str, store: Path, cap_gib: float | None, argv: list[str]) -> dict:
    def limit():
        if cap_gib is not None:
            cap = int(cap_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, *argv, "--child", child, "--store", str(store)]
    done = subprocess.run(
        command, preexec_fn=limit, env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    record = json.loads(lines[-1]) if lines else {}
    record["cap_gib"] = cap_gib
    record["exit_code"] = done.returncode
    if done.returncode and not lines:
        record["error"] = done.stderr.strip().splitlines()[-1][:200] if done.stderr else ""
    return record


def _peak_rss_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def _peak_vm_gib() -> float:
    """Peak address space (``VmPeak``), the quantity ``RLIMIT_AS`` caps."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmPeak:"):
            return round(int(line.split()[1]) / 2**20, 3)
    return float("nan")


def child_eager(args) -> dict:
    """Read the whole store into memory: the cap should make this fail."""
    start = time.perf_counter()
    try:
        FieldDataset.open(args.store, chunks=False).to_tensor()
        outcome = "loaded"
    except MemoryError:
        outcome = "MemoryError"
    except Exception as error:  # noqa: BLE001 - a cap may surface as another error
        outcome = f"{type(error).__name__}: {str(error)[:100]}"
    return {
        "outcome": outcome,
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_gib": _peak_rss_gib(),
        "peak_vm_gib": _peak_vm_gib(),
    }


def child_train(args) -> dict:
    """Lazy training from the store, and in-memory training on its first samples, in turn.

    Both runs share the process (and its cap) and alternate rounds of steps, so a load
    change on the shared machine hits both alike.
    """
    import sciml_diffusion.diffusion.train as train_module

    config = train_module.TrainConfig(
        **MODEL, steps=10**6, batch_size=args.batch_size, val_every=10**6
    )
    lazy = FieldDataset.open(args.store, chunks=args.chunk)
    small = FieldDataset(lazy.isel(sample=slice(0, args.memory_samples)).xarray.load())
    assert lazy.is_lazy and not small.is_lazy
    out = {}
    runs = {}
    for name, dataset in (("lazy", lazy), ("memory", small)):
        start = time.perf_counter()
        runs[name] = train_module._Run(dataset, config, out=None, resume=False)
        out[name] = {
            "samples": len(dataset),
            "data_gib": round(len(dataset) * 4 * float(np.prod(dataset.grid.shape)) / 2**30, 3),
            "prepare_s": round(time.perf_counter() - start, 2),
            "sigma_data": round(runs[name].run_config["sigma_data"], 6),
        }
    for name, run in runs.items():
        gen = torch.Generator().manual_seed(1)
        start = time.perf_counter()
        for _ in range(args.reads):
            run.data.batch(torch.randint(len(run.data), (args.batch_size,), generator=gen))
        out[name]["batch_reads_per_s"] = round(args.reads / (time.perf_counter() - start), 2)
    seconds = dict.fromkeys(runs, 0.0)
    for run in runs.values():  # one warm-up step each, not timed
        run._train_step()
        run.step += 1
    for _ in range(0, args.steps, ROUND):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(ROUND):
                run._train_step()
                run.step += 1
            seconds[name] += time.perf_counter() - start
    for name in runs:
        steps = (runs[name].step - 1) / seconds[name]
        out[name].update(
            steps_per_s=round(steps, 3), samples_per_s=round(steps * args.batch_size, 2)
        )
    return {**out, "peak_rss_gib": _peak_rss_gib(), "peak_vm_gib": _peak_vm_gib()}


CHILDREN = {"train": child_train, "eager": child_eager}

if __name__ == "__main__":
    xr.set_options(keep_attrs=True)
    main()
