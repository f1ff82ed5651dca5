"""A few training steps of each trainer on tiny data; run under torchrun or imported.

``python -m torch.distributed.run --nproc_per_node=2 tests/data_parallel_steps.py OUT BATCH``
trains with ``BATCH`` per process and writes, on rank 0, ``OUT/weights.pt``: the weights of
the prior (after 1 and 3 steps), of a forecaster stage with a deterministic loss, of every
stage of every forecaster and of a latent SDE trained by SDE matching (after 1 and 2 steps),
and whether every rank holds the same weights of a latent SDE trained by the adjoint method.
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


#: forecasters of every method, tiny, every random draw of their losses switched on
FORECAST = dict(
    context=1,
    horizon=2,
    width=4,
    n_layers=1,
    n_modes=2,
    lr=3e-3,
    warmup=1,
    checkpoint_every=1,
    val_fraction=0.0,
    extra_steps=1,
    dropout=0.2,
    lookahead_weight=1.0,
    noise="grf",
    device="cpu",
)


def forecast_data() -> FieldDataset:
    """3 trajectories of 6 frames on an 8-node periodic grid, NaN land differing per sample.

    Windows of 3 frames: 12 of them, with different numbers of valid points.
    """
    grid = Grid.regular(8, periodic=True)
    x = torch.randn(3, 6, 1, 8, generator=torch.Generator().manual_seed(2))
    for s in range(3):
        x[s, :, :, : 2 * s] = float("nan")  # land: none, 2 or 4 of the 8 nodes
    return FieldDataset.from_tensor(x, variables=["u"], grid=grid, time=range(6))


def forecaster_weights(batch: int, out: Path) -> dict:
    """Weights of each forecaster's stages after 1 step, then 2 (resumed), and their EMA."""
    from sciml_diffusion import forecast
    from sciml_diffusion.diffusion.prior import load_checkpoint as load

    data, result = forecast_data(), {}
    for method in ("dyffusion", "rolling", "diffusion"):
        config = {**FORECAST, "method": method, "batch_size": batch}
        run = out / method
        forecast.fit(
            data, None, {**config, "steps": 1, "interpolator_steps": 1}, out=run, progress=False
        )
        first = {
            stage: load(run / stage, "cpu")["model"]
            for stage in ("interpolator", "forecaster", "model")
            if (run / stage).exists()
        }
        config = {**config, "steps": 2, "interpolator_steps": 2}
        forecast.fit(data, None, config, out=run, resume=True, progress=False)
        for stage, state in first.items():
            last = load(run / stage, "cpu")
            result[f"{method} {stage}"] = {
                "first": state,
                "last": last["model"],
                "ema": last["ema"],
            }
    return result


def sde_series():
    """12 sequences of 5 regular times, 2 channels, some values missing (NaN)."""
    from sciml_diffusion.sde.series import ObservedSeries

    values = torch.randn(12, 5, 2, generator=torch.Generator().manual_seed(3))
    values[::3, 1:3, 0] = float("nan")
    values[1::4, 2, :] = float("nan")
    return ObservedSeries.from_tensors(torch.linspace(0, 1, 5), values)


def sde_weights(batch: int, out: Path) -> dict:
    """A latent SDE trained by SDE matching with hidden slots: 1 step, then 2 (resumed)."""
    from sciml_diffusion.sde.latent import LatentSDE
    from sciml_diffusion.sde.train import TrainConfig, train

    def model():
        torch.manual_seed(0)
        return LatentSDE(2, 2, hidden=8, context_dim=4)

    run, series = out / "sde", sde_series()
    settings = dict(method="matching", batch_size=batch, t_samples=3, hide_fraction=0.3)
    first = model()
    train(first, series, TrainConfig(steps=1, **settings), run_dir=run, progress=False)
    last = model()
    train(last, series, TrainConfig(steps=2, **settings), run_dir=run, resume=True, progress=False)
    return {"sde matching": {"first": first.state_dict(), "last": last.state_dict()}}


def adjoint_in_sync(batch: int) -> dict:
    """A latent SDE trained 2 steps by the adjoint method: equal on all ranks?"""
    from sciml_diffusion.sde.latent import LatentSDE
    from sciml_diffusion.sde.train import TrainConfig, train

    torch.manual_seed(0)
    sde = LatentSDE(2, 2, hidden=8, context_dim=4, posterior="drift")
    config = TrainConfig(method="adjoint", steps=2, batch_size=batch, dt=0.25)
    train(sde, sde_series(), config, progress=False)
    return {"sde adjoint": in_sync(sde)}


def run(out: Path, batch: int) -> dict:
    torch.set_num_threads(1)
    return {
        "prior": prior_weights(batch, out),
        "stage": stage_weights(batch, out),
        **forecaster_weights(batch, out),
        **sde_weights(batch, out),
        "synced": adjoint_in_sync(batch),
    }


if __name__ == "__main__":
    target, per_rank = Path(sys.argv[1]), int(sys.argv[2])
    with distributed.session("cpu") as ctx:
        result = run(target, per_rank)
        result["world_size"] = ctx.world_size
        if ctx.is_main:
            torch.save(result, target / "weights.pt")
