"""One training stage of a forecaster: AdamW, warm-up, clipping, EMA, checkpoints, resume.

A stage trains one network on a loss ``loss_fn(model, x, mask, generators)`` of a batch of
windows ``x (B, L, C, *spatial)`` (``generators``: one per window), a scalar tensor or
:class:`~sciml_diffusion.data_parallel.Means`. Every random draw (the seeds of the windows'
generators, the seed of torch's global RNG) comes from one ``torch.Generator`` whose state
is checkpointed with
the model, its EMA and the optimiser in ``<run>/<stage>/checkpoint.pt``, so a resumed
stage continues exactly where it stopped. The pieces are those of
:func:`~sciml_diffusion.diffusion.train.train_prior`
(:mod:`~sciml_diffusion.diffusion.training_state`).

Windows are taken in epoch permutations drawn from ``(seed, epoch)``
(:class:`~sciml_diffusion.data_parallel.EpochBatches`), whose position is checkpointed too.
Under ``torchrun`` each process trains a DDP replica of the loss on its rows of each global
batch of ``batch_size x world_size`` windows (disjoint within an epoch), gradients averaged
over the processes. The loss's random draws come from one generator per window, seeded from
one draw of the shared generator and the window's position in the global batch
(:func:`~sciml_diffusion.data_parallel.item_generators`), and a loss made of masked means
(:class:`~sciml_diffusion.data_parallel.Means`) is weighted by each process's share of the
valid points: a step on ``W`` processes is the step of one process with ``W`` times the
batch (up to float rounding). Rank 0 alone computes the validation loss (as one process
does), logs and writes checkpoints.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from sciml_diffusion import distributed
from sciml_diffusion.data_parallel import (
    EpochBatches,
    Means,
    item_generators,
    mean_share,
    replicate,
    scale_note,
)
from sciml_diffusion.diffusion.acceleration import FastNetwork
from sciml_diffusion.diffusion.prior import CHECKPOINT_FILE, load_checkpoint
from sciml_diffusion.diffusion.training_state import (
    check_finite,
    save_state,
    update_ema,
    warmup_lr,
)
from sciml_diffusion.forecast.config import ForecastConfig
from sciml_diffusion.forecast.windows import Windows

__all__ = ["train_stage", "validation_loss"]

Loss = Callable[[nn.Module, torch.Tensor, torch.Tensor, list], torch.Tensor | Means]


def train_stage(
    name: str,
    model: nn.Module,
    loss_fn: Loss,
    train: Windows,
    val: Windows | None,
    config: ForecastConfig,
    steps: int,
    directory: Path | None,
    device: torch.device,
    resume: bool = False,
    progress: bool = True,
) -> nn.Module:
    """Train ``model`` for ``steps`` steps; returns its EMA copy in eval mode.

    Parameters
    ----------
    name : str
        Stage name (progress bar, log).
    directory : Path, optional
        ``<run>/<stage>``: ``checkpoint.pt`` and ``log.jsonl``; nothing written without it.
    resume : bool
        Continue from ``directory/checkpoint.pt`` if it exists.
    """
    model = model.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed + _offset(name))
    batches = EpochBatches(len(train), config.batch_size, config.seed + _offset(name))
    step = saved = 0
    distributed.barrier()  # a checkpoint rank 0 wrote is complete before it is read back
    if resume and directory is not None and (directory / CHECKPOINT_FILE).exists():
        step = saved = _restore(directory, model, ema, optimizer, generator, batches, device)
    network = FastNetwork(model, device, config.bf16, config.compile)  # what the loss calls
    replica = replicate(model, _through(network, loss_fn))
    main = distributed.is_main()
    progress = progress and main
    if main and distributed.context().is_distributed:
        print(scale_note(f"the {name}", config.batch_size, config.lr), file=sys.stderr)
    bar = tqdm(total=steps, initial=step, desc=f"training {name}", disable=not progress)
    while step < steps:
        warmup_lr(optimizer, config.lr, step, config.warmup)
        x, mask = train.take(batches.next(), device)
        model.train()
        loss, reported = mean_share(_seeded(replica, x, mask, generator, batches.rows.start))
        where = f"the checkpoint of step {saved} in {directory}" if saved else "nothing"
        check_finite(reported, f"{name} loss", step + 1, where)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        check_finite(norm, f"{name} gradient norm", step + 1, where)
        optimizer.step()
        update_ema(ema, model, step, config.ema_decay)
        step += 1
        bar.update(1)
        record = {"stage": name, "step": step, "loss": float(reported)}
        if main and val is not None and (step % config.val_every == 0 or step == steps):
            record["val_loss"] = validation_loss(ema, loss_fn, val, config, device)
        bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if "loss" in k})
        if directory is not None:
            if main:
                _log(directory, record)
            if step % config.checkpoint_every == 0 or step == steps:
                if main:
                    _save(directory, step, model, ema, optimizer, generator, batches)
                saved = step
    bar.close()
    distributed.barrier()  # the stage's last checkpoint is written before any rank goes on
    return ema.eval()


@torch.no_grad()
def validation_loss(model, loss_fn: Loss, val: Windows, config: ForecastConfig, device) -> float:
    """Loss of ``model`` on up to ``config.val_windows`` evenly spaced validation windows,
    with a fixed generator (comparable across steps)."""
    generator = torch.Generator().manual_seed(config.seed + 1)
    count = min(len(val), config.val_windows)
    rows = torch.linspace(0, len(val) - 1, count).round().long()
    was_training = model.training
    model.eval()
    total = 0.0
    for chunk in rows.split(config.batch_size):
        x, mask = val.take(chunk, device)
        loss = _seeded(functools.partial(loss_fn, model), x, mask, generator)
        total += float(loss.value() if isinstance(loss, Means) else loss) * len(chunk)
    model.train(was_training)
    return total / count


def _seeded(loss, x, mask, generator, start: int = 0):
    """``loss(x, mask, generators)``, one generator per window (the first at position
    ``start`` of the global batch), with torch's global RNG seeded from ``generator``: the
    same on every rank, resumable."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    generators = item_generators(generator, x.shape[0], start)
    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        torch.manual_seed(seed)
        return loss(x, mask, generators)


def _through(network: FastNetwork, loss_fn: Loss) -> Loss:
    """``loss_fn`` calling the trained model through ``network`` (compiled and/or bf16
    autocast, sharing its parameters, so DDP's gradient hooks fire either way)."""

    def loss(model, x, mask, generators):
        return loss_fn(network if model is network.module else model, x, mask, generators)

    return loss


def _offset(name: str) -> int:
    return sum(ord(c) for c in name) * 7919


def _save(directory: Path, step, model, ema, optimizer, generator, batches) -> None:
    state = {
        "step": step,
        "position": batches.position,
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": generator.get_state(),
    }
    save_state(directory, state)


def _restore(directory: Path, model, ema, optimizer, generator, batches, device) -> int:
    state = load_checkpoint(directory, device)
    missing = {"model", "optimizer", "rng"} - set(state)
    if missing:
        raise ValueError(f"the checkpoint in {directory} lacks {sorted(missing)}; cannot resume")
    try:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"the checkpoint in {directory} does not fit its config: {str(error).splitlines()[0]}"
        ) from error
    generator.set_state(state["rng"].cpu())
    step = int(state["step"])
    batches.position = int(state.get("position", step * batches.global_batch))
    return step


def _log(directory: Path, record: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
