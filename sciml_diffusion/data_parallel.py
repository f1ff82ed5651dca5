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
- :func:`item_generators` / :func:`per_item`: the random draws inside a loss, one
  generator per item of the global batch, seeded from one draw of the shared generator and
  the item's position in the global batch: an item gets the same draws (noise levels,
  noise, times, dropout masks) whichever rank, and whatever batch, it is computed in. The
  shared generator advances by one draw per step on every rank, so it stays identical on
  all ranks and is what a checkpoint holds.
- :class:`Means`: a loss made of means over different numbers of points (masked means, NaN
  land), kept as (mean, count) pairs so that each rank can weigh its means by its share of
  the global batch's points (:meth:`Means.share`, :func:`mean_share`): the averaged
  gradient is that of the global batch's means.
- :func:`decided_on_main`: a check (output folder, resume) run by rank 0 alone, its result or
  its error handed to every rank, so that all ranks go on or all stop.
- :func:`scale_note`: the line a trainer prints once: processes, effective batch, learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sciml_diffusion import distributed

__all__ = [
    "EpochBatches",
    "Objective",
    "replicate",
    "item_generators",
    "per_item",
    "Means",
    "mean_share",
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


def item_generators(source, n: int, start: int = 0) -> list[torch.Generator]:
    """One generator for each of ``n`` items at global positions ``start .. start + n - 1``.

    Parameters
    ----------
    source : torch.Generator, list of torch.Generator, or None
        A generator: one seed ``s`` is drawn from it and item ``i`` gets the generator
        seeded ``s * 1000003 + i``. A list of ``n`` generators is returned as it is; ``None``
        draws ``s`` from torch's global generator.
    n : int
        Items (this rank's rows of the global batch).
    start : int
        Position of the first item in the global batch (:attr:`EpochBatches.rows`).
    """
    if isinstance(source, (list, tuple)):
        if len(source) != n:
            raise ValueError(
                f"{len(source)} generators given for a batch of {n}; pass one per item"
            )
        return list(source)
    seed = int(torch.randint(2**31 - 1, (1,), generator=source))
    first = seed * 1_000_003 + int(start)
    return [torch.Generator().manual_seed(first + i) for i in range(n)]


def per_item(generators, draw) -> torch.Tensor:
    """``draw(generator)`` for each item's generator, stacked: ``(n, *draw's shape)``.

    E.g. ``per_item(gens, lambda g: torch.rand(4, generator=g))`` is ``(n, 4)``.
    """
    return torch.stack([draw(g) for g in generators])


@dataclass(frozen=True)
class Means:
    """A loss :math:`\\sum_k w_k m_k` of means :math:`m_k` over :math:`n_k` points each.

    One process back-propagates :meth:`value`. On ``W`` processes rank ``r``'s mean
    :math:`m_{k,r}` covers its own :math:`n_{k,r}` points; DDP averages the gradients of
    what each rank back-propagates, so each rank back-propagates
    :math:`\\sum_k w_k m_{k,r} W n_{k,r} / \\sum_r n_{k,r}` (:meth:`share`): the gradient of
    the means over the global batch, however the valid points are spread over the ranks.

    Build with :meth:`of`, ``+`` and multiplication by a float:
    ``2.0 * Means.of(mse, count) + Means.of(other, count2)``.

    Attributes
    ----------
    means : tuple of scalar tensors
    counts : tuple of scalar tensors
        Number of points of each mean (0 for an empty one, whose mean must be 0).
    weights : tuple of float
    """

    means: tuple
    counts: tuple
    weights: tuple

    @classmethod
    def of(cls, mean: torch.Tensor, count) -> Means:
        """One mean ``mean`` over ``count`` points, weight 1."""
        return cls((mean,), (torch.as_tensor(count).detach(),), (1.0,))

    def __add__(self, other: Means) -> Means:
        return Means(
            self.means + other.means, self.counts + other.counts, self.weights + other.weights
        )

    def __rmul__(self, weight: float) -> Means:
        return Means(self.means, self.counts, tuple(float(weight) * w for w in self.weights))

    def value(self) -> torch.Tensor:
        """:math:`\\sum_k w_k m_k`: the loss of this batch alone."""
        return sum(w * m for w, m in zip(self.weights, self.means))

    def share(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's loss to back-propagate, and the global batch's loss (for the log).

        One process: :meth:`value` twice. Several: one ``all_reduce`` of the counts and
        the count-weighted means.
        """
        if not distributed.context().is_distributed:
            return self.value(), self.value().detach()
        counts = torch.stack([c.double().to(self.means[0].device) for c in self.counts])
        means = torch.stack([m.detach().double() for m in self.means])
        sums = torch.cat([means * counts, counts])
        torch.distributed.all_reduce(sums)
        k = len(self.means)
        total = sums[k:].clamp_min(1)
        world = distributed.context().world_size
        share = sum(
            w * m * (world * c / t).to(m.dtype)
            for w, m, c, t in zip(self.weights, self.means, counts, total)
        )
        weights = torch.tensor(self.weights, dtype=torch.float64, device=total.device)
        return share, (weights * sums[:k] / total).sum()


def mean_share(loss) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`Means.share` of ``loss``; a plain tensor is a mean over the same number of
    items on every rank: back-propagated as it is, logged as the mean over the ranks."""
    if isinstance(loss, Means):
        return loss.share()
    return loss, torch.tensor(distributed.all_reduce_mean(float(loss.detach())))


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
