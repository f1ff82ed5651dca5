r"""Pieces of a training loop shared by every trainer: learning-rate warm-up, the exponential
moving average (EMA) of the weights, finite-loss checks and atomic checkpoints.

The EMA decay at step :math:`k` is :math:`\min(\beta, (1 + k) / (10 + k))`, the schedule of
:func:`~sciml_diffusion.diffusion.train.train_prior`. A checkpoint holds state dicts and
tensors only, written to a temporary file and renamed into place, and read back with
``torch.load(weights_only=True)`` (:func:`~sciml_diffusion.diffusion.prior.load_checkpoint`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from sciml_diffusion.diffusion.prior import CHECKPOINT_FILE
from sciml_diffusion.diffusion.train import NonFiniteLossError
from sciml_diffusion.fields.io import atomic_path

__all__ = ["warmup_lr", "update_ema", "check_finite", "save_state", "NonFiniteLossError"]


def warmup_lr(optimizer: torch.optim.Optimizer, lr: float, step: int, warmup: int) -> None:
    """Linear warm-up: learning rate ``lr * min(1, (step + 1) / warmup)``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * min(1.0, (step + 1) / max(warmup, 1))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """``ema <- ema + (1 - d) (model - ema)`` with ``d = min(decay, (1 + step) / (10 + step))``."""
    d = min(decay, (1 + step) / (10 + step))
    for target, source in zip(ema.parameters(), model.parameters()):
        target.lerp_(source, 1 - d)


def check_finite(value: torch.Tensor, what: str, step: int, saved: str) -> None:
    """Raise :class:`NonFiniteLossError` naming the step when ``value`` is NaN or inf.

    ``saved`` says what was kept on disk (e.g. ``"the checkpoint of step 200 in run/"``).
    """
    if torch.isfinite(value).all():
        return
    raise NonFiniteLossError(
        f"training stopped at step {step}: the {what} is {float(value.detach())}; {saved} "
        "is kept. Lower the learning rate, check the data for extreme values, or resume."
    )


def save_state(directory: str | os.PathLike, state: dict) -> None:
    """Write ``state`` (tensors and state dicts) to ``directory/checkpoint.pt`` atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / CHECKPOINT_FILE) as tmp:
        torch.save(state, tmp)
