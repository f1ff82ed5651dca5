"""Per-iteration time and peak memory of latent-SDE training versus sequence length.

For each number of observation times (25, 50, 100, 200 by default; spacing 0.02, so the
window and the number of solver steps grow with it) and each method (SDE matching,
torchsde adjoint, backprop through the solver), one training step (loss, backward, Adam) is
timed on the same model and batch, in one process. Prints one JSON line per
(method, length), with ratios against the adjoint method at the same length, for wall time
and for the process's CPU time (the latter is robust to other jobs on a shared machine).

Memory is the peak of the tensors held for backward by autograd (measured with
``torch.autograd.graph.saved_tensors_hooks``, storages counted once, freed when the graph
is), which is the part that grows with sequence length; on CUDA the peak allocated memory
is reported too.

    python benchmarks/sde_training.py > docs/results/sde_training.jsonl
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sciml_diffusion.sde import LatentSDE, ObservedSeries, TrainConfig, Trainer
from sciml_diffusion.sde.train import posterior_kind


class SavedTensorMeter:
    """Live and peak bytes of tensors saved for backward while active."""

    def __init__(self):
        self.live, self.peak, self._count = 0, 0, {}

    def _pack(self, tensor: torch.Tensor):
        try:
            storage = tensor.untyped_storage()
            key, nbytes = (storage.data_ptr(), str(tensor.device)), storage.nbytes()
        except RuntimeError:  # wrapper tensors (e.g. forward-mode AD) have no plain storage
            key, nbytes = ("id", id(tensor)), tensor.element_size() * tensor.nelement()
        if key not in self._count:
            self._count[key] = [0, nbytes]
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        self._count[key][0] += 1
        return _Saved(tensor, key, self)

    def _release(self, key) -> None:
        entry = self._count[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._count[key]

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda s: s.tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


class _Saved:
    __slots__ = ("tensor", "key", "meter")

    def __init__(self, tensor, key, meter):
        self.tensor, self.key, self.meter = tensor, key, meter

    def __del__(self):
        self.meter._release(self.key)


def batch(length: int, size: int, spacing: float, device) -> ObservedSeries:
    g = torch.Generator().manual_seed(length)
    times = spacing * torch.arange(length, dtype=torch.float32)
    values = torch.randn(size, length, 3, generator=g)
    return ObservedSeries.from_tensors(times, values).to(device)


def measure(method: str, series: ObservedSeries, args, device) -> dict:
    torch.manual_seed(0)
    model = LatentSDE(3, 4, hidden=64, context_dim=32, posterior=posterior_kind(method))
    model = model.to(device)
    config = TrainConfig(method=method, batch_size=len(series), dt=args.dt, steps=10**6)
    trainer = Trainer(model, series, config)
    trainer.step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    repeats = args.repeats if method != "matching" else 5 * args.repeats
    with SavedTensorMeter() as meter:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            trainer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    row = {
        "method": method,
        "length": len(series.times[0]),
        "solver_steps": round(float(series.times[0, -1]) / args.dt),
        "batch": len(series),
        "seconds_per_iter": wall / repeats,
        "cpu_seconds_per_iter": cpu / repeats,
        "peak_saved_mb": meter.peak / 2**20,
    }
    if device.type == "cuda":
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="25,50,100,200")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--spacing", type=float, default=0.02)
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for length in (int(n) for n in args.lengths.split(",")):
        series = batch(length, args.batch, args.spacing, device)
        rows = {m: measure(m, series, args, device) for m in ("adjoint", "backprop", "matching")}
        base = rows["adjoint"]
        for row in rows.values():
            row["time_ratio_vs_adjoint"] = row["seconds_per_iter"] / base["seconds_per_iter"]
            row["cpu_time_ratio_vs_adjoint"] = (
                row["cpu_seconds_per_iter"] / base["cpu_seconds_per_iter"]
            )
            row["memory_ratio_vs_adjoint"] = row["peak_saved_mb"] / base["peak_saved_mb"]
            row["device"] = str(device)
            row["threads"] = args.threads
            row["torch"] = torch.__version__
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
