"""Data-parallel training on several processes: batch order, replicated loss, rank-0 decisions.

Every trainer of the package (:func:`~sciml_diffusion.diffusion.train.train_prior`, the
forecasters' :func:`~sciml_diffusion.forecast.training.train_stage`, the latent SDE's
:class:`~sciml_diffusion.sde.train.Trainer`) runs unchanged under ``torchrun`` with the pieces
here, on top of :mod:`sciml_diffusion.distributed` and
:class:`torch.nn.parallel.DistributedDataParallel` (DDP):

- :class:`EpochBatches`: the order in which training items are seen. Epoch ``e`` is the
  permutation ``randperm(n, Generator().manual_seed(seed + e))``, exactly the shuffle of
  :class:`torch.utils.data.DistributedSampler`; the epochs are read one after the other as
  one stream, cut into *global* batches of ``batch_size x world_size`` consecutive items, and
  rank ``r`` takes rows ``r * batch_size .. (r + 1) * batch_size - 1`` of each. Within an epoch
  the ranks' items are disjoint, and the global batch is the batch a single process with
  ``batch_size x world_size`` would take: with DDP averaging the gradients of per-rank mean
  losses, both take the same optimiser step (up to float rounding).
- :func:`replicate`: a loss ``loss(model, *batch)`` as one module, wrapped in DDP when
  several processes run (one forward per backward, however often the loss calls the model).
- :func:`rank_generator`: a generator for the random draws inside a loss that cannot be
  paired with the global batch's rows: the shared generator itself on one process, one
  seeded from it per rank otherwise (every rank draws the same seeds, so the shared
  generator stays identical on all ranks and is what a checkpoint holds).
- :func:`decided_on_main`: a check (output folder, resume) run by rank 0 alone, its result or
  its error handed to every rank, so that all ranks go on or all stop.
- :func:`scale_note`: the line a trainer prints once: processes, effective batch, learning rate.
"""

from __future__ import annotations

import torch
from torch import nn

from sciml_diffusion import distributed

__all__ = [
    "EpochBatches",
    "Objective",
    "replicate",
    "rank_generator",
    "decided_on_main",
    "scale_note",
]


class EpochBatches:
    """Global batches from a stream of epoch permutations; this rank's rows of each.

    Parameters
    ----------
    n : int
        Number of training items (samples, windows, sequences).
    batch_size : int
        Items per step *per process*; the global batch is ``batch_size x world_size``.
    seed : int
        Epoch ``e`` is ``torch.randperm(n, generator=Generator().manual_seed(seed + e))``
        (the :class:`~torch.utils.data.DistributedSampler` convention).
    context : distributed.Context, optional
        Rank and world size (default: :func:`distributed.context`).

    Attributes
    ----------
    position : int
        Items of the stream consumed so far (by all ranks together): what a checkpoint
        keeps, so a resumed run, on any number of processes, continues the same stream.
    """

    def __init__(self, n: int, batch_size: int, seed: int, context=None):
        if n < 1:
            raise ValueError("there are no training items to draw batches from")
        context = context or distributed.context()
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.rank, self.world_size = context.rank, context.world_size
        self.position = 0
        self._epoch, self._order = -1, None

    @property
    def global_batch(self) -> int:
        """Items per optimiser step over all processes."""
        return self.batch_size * self.world_size

    @property
    def rows(self) -> slice:
        """This rank's rows of a global batch (and of anything drawn per global row)."""
        return slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)

    def epoch(self, e: int) -> torch.Tensor:
        """The permutation ``(n,)`` of epoch ``e``."""
        if e != self._epoch:
            generator = torch.Generator().manual_seed(self.seed + e)
            self._epoch, self._order = e, torch.randperm(self.n, generator=generator)
        return self._order

    def global_indices(self, position: int) -> torch.Tensor:
        """Items ``(global_batch,)`` at stream positions ``position, position + 1, ...``."""
        where = torch.arange(position, position + self.global_batch)
        out = torch.empty(self.global_batch, dtype=torch.long)
        for e in torch.unique(where // self.n).tolist():
            hit = where // self.n == e
            out[hit] = self.epoch(e)[where[hit] % self.n]
        return out

    def next(self) -> torch.Tensor:
        """This rank's items ``(batch_size,)`` of the next global batch; advances the stream."""
        items = self.global_indices(self.position)[self.rows]
        self.position += self.global_batch
        return items


class Objective(nn.Module):
    """``loss(model, *args)`` as a module: ``Objective(model, loss)(*args)``.

    DDP synchronises gradients of what runs inside its wrapped module's ``forward``; making
    the whole loss the forward lets a loss call the model several times (or call its
    methods other than ``forward``) in one step.
    """

    def __init__(self, model: nn.Module, loss):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, *args, **kwargs):
        return self.loss(self.model, *args, **kwargs)


def replicate(model: nn.Module, loss) -> nn.Module:
    """``loss`` of ``model`` as a module; in DDP when several processes run.

    DDP averages the gradients over ranks in ``backward`` (and broadcasts rank 0's weights
    once, on construction). ``device_ids`` stays ``None``, so the inputs are used where
    they are (already on this rank's device). ``model`` itself keeps being the module to
    optimise, average (EMA) and save.
    """
    objective = Objective(model, loss)
    if not distributed.context().is_distributed:
        return objective
    return nn.parallel.DistributedDataParallel(objective, device_ids=None)


def rank_generator(shared: torch.Generator) -> torch.Generator:
    """The generator of this rank's own draws in a step: ``shared`` on one process.

    With ``W`` processes every rank draws ``W`` seeds from ``shared`` (so it stays the same
    on all ranks) and seeds a new generator with the seed of its rank.
    """
    context = distributed.context()
    if context.world_size == 1:
        return shared
    seeds = torch.randint(2**62, (context.world_size,), generator=shared)
    return torch.Generator().manual_seed(int(seeds[context.rank]))


def decided_on_main(check, *args, **kwargs):
    """``check(*args, **kwargs)`` on rank 0 only; its result, or its error, on every rank.

    For checks with side effects or that read files another rank may be writing (an output
    folder, a run to resume): rank 0 decides and every rank returns the same value or raises
    the same exception, so no rank waits forever for one that stopped.
    """
    if not distributed.context().is_distributed:
        return check(*args, **kwargs)
    outcome = None
    if distributed.is_main():
        try:
            outcome = (True, check(*args, **kwargs))
        except Exception as error:  # handed to every rank, raised there
            outcome = (False, error)
    ok, value = distributed.broadcast(outcome)
    if not ok:
        raise value
    return value


def scale_note(what: str, batch_size: int, lr: float) -> str:
    """``"training X on 2 processes: 8 per process, 16 per step; lr 0.001 (not scaled...)"``."""
    world = distributed.context().world_size
    return (
        f"training {what} on {world} process{'es' if world > 1 else ''}: batch {batch_size} "
        f"per process, effective batch {batch_size * world} per step; learning rate {lr:g} "
        "as given (not scaled with the number of processes)"
    )
