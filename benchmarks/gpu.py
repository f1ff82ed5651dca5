"""GPU fast paths of the prior: training steps/s and sampling seconds per member, with and
without bf16 autocast and ``torch.compile``, against the float32 eager baseline.

One JSON line per (phase, configuration) to stdout and, with ``--out FILE``, to that file::

    python3 benchmarks/gpu.py --out gpu.jsonl                       # 128^2 on cuda
    python3 benchmarks/gpu.py --device cpu --resolution 16 --steps 2   # smoke test

Data: Darcy-like pairs ``(a, u)`` of two Gaussian random fields on the unit square (the
project's spectral GRF sampler; the content of the data does not change the cost), drawn
in the script. The model is the prior's denoiser with the ``TrainConfig`` defaults (FNO
width 32, 12 modes, 4 layers, GRF noise), built with :func:`build_denoiser`.

Per configuration ``fp32``, ``bf16``, ``fp32+compile``, ``bf16+compile`` (a fresh model from
the same seed each time, ``torch._dynamo.reset()`` in between):

- training: ``--warmup`` AdamW steps of the EDM loss with an EMA update (the first one
  compiles; its wall time is ``first_step_s``, and ``compile_s`` is that minus a steady
  step), then ``--steps`` timed steps, ``torch.cuda.synchronize()`` before and after;
- sampling: one warm-up ensemble (compiles the no-grad graph), then ``--repeats`` timed
  ensembles of ``--members`` members with Heun over ``--sampling-steps`` EDM levels
  (``2 * levels - 1`` network calls per member), reported per member. ``rel_l2_vs_fp32``
  is the relative L2 distance of the ensemble from the fp32 eager one (same seeds); the
  weights are untrained, so it measures arithmetic, not sample quality.

``peak_mem_mb`` is ``torch.cuda.max_memory_allocated`` over the timed part (``null`` on
CPU), ``speedup_vs_fp32`` the fp32 eager time over this configuration's, measured in the
same process. bf16 is a no-op on CPU (``autocast: false``). On CPU ``torch.compile`` uses
Dynamo's ``eager`` backend unless ``--backend inductor`` is given (graph capture without
code generation, so the smoke test stays quick). If compilation fails the configuration
runs eagerly and ``compile_failure`` says why. At the default size the four compilations
(training and sampling graphs, bf16 and fp32) took 40 s together on one H100, and the whole
run well under 3 minutes (results: ``docs/results/gpu_bench.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from sciml_diffusion.diffusion import GRFNoise, Prior, edm_loss
from sciml_diffusion.diffusion.acceleration import CompiledDenoiser, bf16_autocast
from sciml_diffusion.diffusion.prior import build_denoiser
from sciml_diffusion.fields import GaussianRandomField, Grid, Normalizer

CONFIGS = {
    "fp32": (False, False),
    "bf16": (True, False),
    "fp32+compile": (False, True),
    "bf16+compile": (True, True),
}


def main(argv=None) -> None:
    args = _parse(argv)
    out = _check_out(args.out, args.overwrite)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    grid = Grid.regular((args.resolution, args.resolution))
    noise = GRFNoise.unit_variance(grid, 1.5, 20.0)
    data = _darcy_like(grid, args.batch_size, device)
    common = _common(args, device)
    baseline: dict = {}
    for name in args.configs:
        bf16, compiled = CONFIGS[name]
        torch._dynamo.reset()
        train = _train(args, data, noise, grid, device, bf16, compiled)
        sample, ensemble = _sample(args, noise, grid, device, bf16, compiled)
        for phase, record, key in (
            ("prior_train", train, "step_s"),
            ("prior_sample", sample, "s_per_member"),
        ):
            baseline.setdefault(phase, record[key] if name == "fp32" else None)
            if baseline[phase]:
                record["speedup_vs_fp32"] = baseline[phase] / record[key]
            config = {"config": name, "bf16": bf16, "compile": compiled}
            autocast = {"autocast": bf16 and device.type == "cuda"}
            _emit({"bench": f"gpu_{phase}", **config, **autocast, **record, **common}, out)
        if name == "fp32":
            baseline["ensemble"] = ensemble
        elif "ensemble" in baseline:
            diff = float((ensemble - baseline["ensemble"]).norm() / baseline["ensemble"].norm())
            record = {"bench": "gpu_prior_sample_diff", "config": name, "rel_l2_vs_fp32": diff}
            _emit({**record, **common}, out)


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--resolution", type=int, default=128, help="nodes per axis")
    parser.add_argument("--batch-size", type=int, default=16, help="training fields per step")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compile here)")
    parser.add_argument("--members", type=int, default=16, help="ensemble members per batch")
    parser.add_argument("--sampling-steps", type=int, default=32, help="EDM noise levels")
    parser.add_argument("--repeats", type=int, default=2, help="timed ensembles")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--modes", type=int, default=12)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument(
        "--backend",
        default=None,
        help="torch.compile backend (default: inductor on CUDA, Dynamo's eager backend on CPU)",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs)")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; pass --device cpu (bf16 is then a no-op)")
    if min(args.steps, args.warmup, args.members, args.repeats, args.batch_size) < 1:
        parser.error("--steps, --warmup, --members, --repeats and --batch-size must be >= 1")
    if args.backend is None:
        args.backend = "inductor" if args.device.startswith("cuda") else "eager"
    return args


def _check_out(path, overwrite: bool) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not overwrite:
        sys.exit(f"gpu.py: {path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def _darcy_like(grid: Grid, n: int, device) -> torch.Tensor:
    """``(n, 2, *grid.shape)``: a log-permeability-like field and a smoother 'pressure'."""
    generator = torch.Generator().manual_seed(0)
    a = GaussianRandomField(2.0, 3.0, boundary="neumann").sample(grid, n, generator)
    u = GaussianRandomField(3.0, 3.0, boundary="neumann").sample(grid, n, generator)
    x = torch.stack([a, u], dim=1).float()
    x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)
    return x.to(device)


def _model(args, grid: Grid, device):
    config = {
        "model": {
            "channels": 2,
            "n_modes": [args.modes, args.modes],
            "width": args.width,
            "n_layers": args.layers,
            "domain": [list(b) for b in grid.bounds],
        },
        "sigma_data": 1.0,
    }
    torch.manual_seed(0)
    return build_denoiser(config).to(device)


def _network(model, compiled: bool, backend: str):
    return CompiledDenoiser(model, backend=backend) if compiled else model


def _train(args, data, noise, grid, device, bf16: bool, compiled: bool) -> dict:
    model = _model(args, grid, device).train()
    ema = [p.detach().clone() for p in model.parameters()]
    network = _network(model, compiled, args.backend)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)

    def step():
        with bf16_autocast(device, bf16):
            loss = edm_loss(network, data, noise, grid, generator=generator, p_mean=-1.2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1e-3)

    first = _timed(step, device)
    for _ in range(args.warmup - 1):
        _timed(step, device)
    _reset_peak(device)
    total = _timed(lambda: [step() for _ in range(args.steps)], device)
    seconds = total / args.steps
    return {
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "step_s": seconds,
        "steps_per_s": 1.0 / seconds,
        "first_step_s": first,
        "compile_s": max(first - seconds, 0.0) if compiled else None,
        "peak_mem_mb": _peak_mb(device),
        "compile_failure": getattr(network, "failure", None),
    }


def _sample(args, noise, grid, device, bf16: bool, compiled: bool):
    model = _model(args, grid, device).eval()
    normalizer = Normalizer(["a", "u"], [0.0, 0.0], [1.0, 1.0], spatial_ndim=2)
    prior = Prior(model, noise, normalizer, grid, bf16=bf16)
    if compiled:
        prior.compile(backend=args.backend)

    result = []

    def ensemble():
        with torch.no_grad():
            result[:] = [
                prior.sample_tensor(
                    args.members, steps=args.sampling_steps, sampler="heun", generator=0
                )
            ]

    first = _timed(ensemble, device)
    _reset_peak(device)
    times = [_timed(ensemble, device) for _ in range(args.repeats)]
    x = result[0].float().cpu()
    seconds = statistics.median(times)
    record = {
        "resolution": args.resolution,
        "members": args.members,
        "sampler": "heun",
        "levels": args.sampling_steps,
        "nfe_per_member": 2 * args.sampling_steps - 1,
        "repeats": args.repeats,
        "s_per_member": seconds / args.members,
        "ensemble_s": seconds,
        "first_ensemble_s": first,
        "compile_s": max(first - seconds, 0.0) if compiled else None,
        "peak_mem_mb": _peak_mb(device),
        "compile_failure": getattr(prior.network, "failure", None),
    }
    return record, x


def _timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _common(args, device) -> dict:
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {args.threads} threads)"
    )
    return {
        "device": name,
        "width": args.width,
        "modes": args.modes,
        "layers": args.layers,
        "backend": args.backend,
        "torch": torch.__version__,
        "matmul_precision": torch.get_float32_matmul_precision(),
    }


def _emit(record: dict, out: Path | None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out is not None:
        with open(out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
