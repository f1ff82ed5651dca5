"""Speed of the diffusion prior: training steps/s and sampling seconds per sample.

One JSON line per measurement::

    python benchmarks/prior.py                       # 32^2, 64^2, 128^2 on CPU
    python benchmarks/prior.py --device cuda --resolutions 64 128 256
    python benchmarks/prior.py --noise-only          # noise draws: Neumann vs stationary

Training: AdamW steps of the EDM loss with GRF noise on random fields (data content does
not change the cost). Sampling: every sampler at each step count, ``--samples`` members per
batch, reported per sample. Timings are wall-clock medians over ``--repeats`` runs after one
warm-up; on a shared CPU they vary with the load. ``--threads`` defaults to 1: on a
loaded 2-core machine two intra-op threads made these small kernels ~30x slower.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time

import torch

from sciml_diffusion.diffusion import (
    SAMPLERS,
    EDMDenoiser,
    GRFNoise,
    StationaryGRFNoise,
    edm_loss,
    edm_sigmas,
)
from sciml_diffusion.diffusion.backbone import ConditionalFNO
from sciml_diffusion.fields import Grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--modes", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--noise-only", action="store_true", help="only time noise draws")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    common = {
        "device": _device_name(device),
        "threads": args.threads,
        "width": args.width,
        "modes": args.modes,
        "layers": 4,
        "torch": torch.__version__,
    }
    for n in args.resolutions:
        grid = Grid.regular((n, n))
        noise = GRFNoise.unit_variance(grid, 1.5, 20.0)
        _noise_draws(noise, grid, args, common)
        if args.noise_only:
            continue
        torch.manual_seed(0)
        backbone = ConditionalFNO(2, (args.modes, args.modes), width=args.width, n_layers=4)
        model = EDMDenoiser(backbone).to(device)
        rate = _train_rate(model, noise, grid, args.batch_size, args.repeats, device)
        record = {"bench": "prior_train", "resolution": n, "batch_size": args.batch_size}
        print(json.dumps({**record, "steps_per_s": rate, **common}), flush=True)
        model.eval()
        for sampler in args.samplers:
            for steps in args.steps:
                seconds = _sample_time(model, noise, grid, sampler, steps, args, device)
                record = {"bench": "prior_sample", "resolution": n, "sampler": sampler}
                record.update(steps=steps, samples=args.samples)
                print(json.dumps({**record, "s_per_sample": seconds, **common}), flush=True)


def _noise_draws(neumann, grid, args, common) -> None:
    """Seconds per batch of noise draws, Neumann (DCT) and stationary (FFT on the doubled
    box), and their ratio in the same process."""
    stationary = StationaryGRFNoise.unit_variance(grid, 1.5, 20.0)
    shape = (args.batch_size, 2, *grid.shape)
    generator = torch.Generator().manual_seed(0)
    seconds = {}
    for name, noise in (("neumann", neumann), ("stationary", stationary)):
        draw = functools.partial(noise.sample, shape, grid, generator)
        times = _timed(draw, args.repeats + 3, "cpu")
        seconds[name] = statistics.median(times[1:])
    record = {"bench": "prior_noise_draw", "resolution": grid.shape[0], "batch": list(shape)}
    record.update({f"{k}_s": v for k, v in seconds.items()})
    record["stationary_over_neumann"] = seconds["stationary"] / seconds["neumann"]
    print(json.dumps({**record, **common}), flush=True)


def _train_rate(model, noise, grid, batch, repeats, device) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 2, *grid.shape, device=device)
    generator = torch.Generator().manual_seed(0)

    def step():
        loss = edm_loss(model, x, noise, grid, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    times = _timed(step, repeats + 1, device)
    return 1.0 / statistics.median(times[1:])


def _sample_time(model, noise, grid, sampler, steps, args, device) -> float:
    sigmas = edm_sigmas(steps)
    generator = torch.Generator().manual_seed(0)

    def run():
        x = 80.0 * noise.sample((args.samples, 2, *grid.shape), grid, generator).to(device)
        with torch.no_grad():
            SAMPLERS[sampler](
                lambda y, s: model(y, s, grid=grid),
                x,
                sigmas,
                noise=noise,
                grid=grid,
                generator=generator,
            )

    times = _timed(run, args.repeats, device)
    return statistics.median(times) / args.samples


def _timed(fn, repeats, device) -> list[float]:
    times = []
    for _ in range(repeats):
        if getattr(device, "type", device) == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if getattr(device, "type", device) == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


if __name__ == "__main__":
    main()
