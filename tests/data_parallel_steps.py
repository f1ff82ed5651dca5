"""A few training steps of each trainer on tiny data; run under torchrun or imported.

``python -m torch.distributed.run --nproc_per_node=2 tests/data_parallel_steps.py OUT BATCH``
trains with ``BATCH`` per process and writes, on rank 0, ``OUT/weights.pt``: the prior's and
a forecaster stage's weights after 1 and 3 steps, and whether every rank's weights (of the
prior, the forecaster stage, a Gaussian-diffusion forecaster and a latent SDE) are equal.
Imported, :func:`run` does the same in this process.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script by torchrun
    sys.path.insert(0, str(ROOT))

from sciml_diffusion import distributed  # noqa: E402
from sciml_diffusion.diffusion import train_prior  # noqa: E402
from sciml_diffusion.diffusion.prior import load_checkpoint  # noqa: E402
from sciml_diffusion.fields import FieldDataset, GaussianRandomField, Grid  # noqa: E402

PRIOR = dict(
    width=8,
    n_layers=1,
    n_modes=4,
    steps=1,
    warmup=2,
    lr=3e-3,
    checkpoint_every=1,
    val_every=1,
    val_samples=4,
    val_fraction=0.25,
    subsample=[1, 2],
    device="cpu",
)


def field_data() -> FieldDataset:
    """12 GRF samples on an 8x8 periodic grid, with NaN holes of different sizes."""
    grid = Grid.regular((8, 8), periodic=True)
    x = GaussianRandomField(2.0, 5.0, 2).sample(grid, 12, torch.Generator().manual_seed(0))
    x = x[:, None].clone()
    for i in range(12):
        x[i, 0, : i % 4, : 1 + i % 3] = float("nan")  # masked points differ per sample
    return FieldDataset.from_tensor(x, variables=["a"], grid=grid)


def prior_weights(batch: int, out: Path) -> dict:
    """Model weights after 1 step, then after 3 (resumed from the step-1 checkpoint)."""
    data, config = field_data(), {**PRIOR, "batch_size": batch}
    train_prior(data, config, out=out / "prior", progress=False)
    first = load_checkpoint(out / "prior", "cpu")["model"]
    prior = train_prior(
        data, {**config, "steps": 3}, out=out / "prior", resume=True, progress=False
    )
    last = load_checkpoint(out / "prior", "cpu")["model"]
    return {"first": first, "last": last, "ema": prior.denoiser.state_dict()}


def stage_weights(batch: int, out: Path) -> dict:
    """A linear next-frame model trained 3 steps by ``train_stage`` (deterministic loss)."""
    from sciml_diffusion.forecast import ForecastConfig, Windows
    from sciml_diffusion.forecast.training import train_stage

    x = torch.randn(3, 6, 1, 4, generator=torch.Generator().manual_seed(1))
    windows = Windows(x, torch.ones_like(x, dtype=torch.bool), 2)  # 15 windows
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(1), nn.Linear(4, 4))
    config = ForecastConfig(batch_size=batch, lr=1e-2, warmup=1, checkpoint_every=1, seed=0)

    def loss(net, x, mask, generator):
        return ((net(x[:, 0]) - x[:, 1].flatten(1)) ** 2).mean()

    ema = train_stage(
        "next", model, loss, windows, None, config, 3, out / "stage", "cpu", progress=False
    )
    return {"model": model.state_dict(), "ema": ema.state_dict()}


def in_sync(*modules: nn.Module) -> bool:
    """Whether every rank holds the same weights in ``modules``."""
    flat = torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])
    every = distributed.all_gather(flat[None])
    return bool((every == every[0]).all())


def other_trainers_in_sync(batch: int, out: Path) -> dict:
    """A Gaussian-diffusion forecaster and latent SDEs, 2 steps each: equal on all ranks?"""
    from sciml_diffusion import forecast
    from sciml_diffusion.sde.latent import LatentSDE
    from sciml_diffusion.sde.series import ObservedSeries
    from sciml_diffusion.sde.train import TrainConfig, train

    grid = Grid.regular(8, periodic=True)
    x = torch.randn(2, 6, 1, 8, generator=torch.Generator().manual_seed(2))
    data = FieldDataset.from_tensor(x, variables=["u"], grid=grid, time=range(6))
    settings = dict(width=4, n_layers=1, n_modes=2, steps=2, batch_size=batch, val_fraction=0.0)
    forecaster = forecast.fit(data, None, {**settings, "horizon": 2}, progress=False)

    series = ObservedSeries.from_tensors(
        torch.linspace(0, 1, 5), torch.randn(8, 5, 2, generator=torch.Generator().manual_seed(3))
    )
    synced = {"forecaster": in_sync(*forecaster.networks.values())}
    for method, posterior in [("matching", "marginal"), ("adjoint", "drift")]:
        torch.manual_seed(0)
        sde = LatentSDE(2, 2, hidden=8, context_dim=4, posterior=posterior)
        config = TrainConfig(method=method, steps=2, batch_size=batch, dt=0.25)
        train(sde, series, config, progress=False)
        synced[f"sde {method}"] = in_sync(sde)
    return synced


def run(out: Path, batch: int) -> dict:
    torch.set_num_threads(1)
    return {
        "prior": prior_weights(batch, out),
        "stage": stage_weights(batch, out),
        "synced": other_trainers_in_sync(batch, out),
    }


if __name__ == "__main__":
    target, per_rank = Path(sys.argv[1]), int(sys.argv[2])
    with distributed.session("cpu") as ctx:
        result = run(target, per_rank)
        result["world_size"] = ctx.world_size
        if ctx.is_main:
            torch.save(result, target / "weights.pt")
