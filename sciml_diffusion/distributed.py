"""Running one command on several processes: ``torchrun`` set-up, sharding and gathering.

Every command of the package runs unchanged under ``torchrun`` (one node or many, SLURM
``srun`` included): :func:`init` reads the standard environment variables torchrun sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), starts the
``torch.distributed`` process group (NCCL on CUDA, gloo on CPU) and picks one device per
local rank. Without those variables, or with ``WORLD_SIZE=1``, it does nothing and the
command runs as a single process.

The rest is what commands need around it:

- :func:`is_main` / :func:`main_only`: progress bars, logs and file writes on rank 0 only.
- :func:`barrier`: every rank waits, e.g. before a checkpoint rank 0 wrote is read back.
- :func:`shard`: the contiguous block of ``n`` items (ensemble members) a rank owns; the
  blocks of all ranks, in rank order, are ``0 .. n-1``.
- :func:`gather` / :func:`all_gather`: every rank's tensor (of any first-dim length) joined
  along dim 0 in rank order, on rank 0 / on every rank.
- :func:`broadcast` / :func:`all_reduce_mean`: one object from rank 0, a mean of floats.
- :func:`member_block` / :func:`gather_members`: the ensemble members a rank computes, and
  all of them, in index order, on rank 0 (commands sharded by member);
  :func:`run_on_main`: a check (of output paths, say) run on rank 0, its verdict on all.

Training uses :class:`torch.nn.parallel.DistributedDataParallel` on top of this; nothing
here replaces ``torch.distributed``'s own communication.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "Context",
    "init",
    "context",
    "shutdown",
    "session",
    "is_main",
    "main_only",
    "barrier",
    "shard",
    "gather",
    "all_gather",
    "broadcast",
    "all_reduce_mean",
    "member_block",
    "gather_members",
    "run_on_main",
]

#: environment variables ``torchrun`` (and ``srun`` + ``torchrun``) sets on every process
ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world_size`` and its device.

    ``backend`` is ``None`` for a single process (no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.backend is not None


_CONTEXT: Context | None = None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _local_device(device, local_rank: int, distributed: bool) -> torch.device:
    """The device of this rank: ``cuda:<local_rank>`` for CUDA under torchrun."""
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and distributed and device.index is None:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"local rank {local_rank} has no GPU: this node has "
                f"{torch.cuda.device_count()}; start at most that many processes per node"
            )
        device = torch.device("cuda", local_rank)
    return device


def init(device="auto", timeout_s: float = 1800.0) -> Context:
    """Start the process group when run under torchrun; a no-op for a single process.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``... Under torchrun, ``cuda``
        becomes ``cuda:<LOCAL_RANK>`` and the backend is NCCL; on CPU it is gloo.
    timeout_s : float
        How long a collective waits for the other ranks before failing.

    Returns
    -------
    Context
        Also kept as the current :func:`context`. Calling ``init`` again returns it.
    """
    global _CONTEXT
    if _CONTEXT is not None and _CONTEXT.is_distributed:
        return _CONTEXT
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process group")
    distributed = world > 1
    device = _local_device(device, local_rank, distributed)
    if not distributed:
        _CONTEXT = Context(device=device)
        return _CONTEXT
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run a single process")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    _CONTEXT = Context(rank, world, local_rank, device, backend)
    return _CONTEXT


def context() -> Context:
    """The current context: the one :func:`init` made, else a single CPU process."""
    return _CONTEXT if _CONTEXT is not None else Context()


def shutdown() -> None:
    """Leave the process group (after a final barrier); a no-op for a single process."""
    global _CONTEXT
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    _CONTEXT = None


@contextlib.contextmanager
def session(device="auto"):
    """``with session(device) as ctx:`` :func:`init` on entry, :func:`shutdown` on exit.

    A session inside another (a command called from a script that runs its own session)
    leaves the process group to the outer one.
    """
    nested = context().is_distributed
    ctx = init(device)
    try:
        yield ctx
    finally:
        if ctx.is_distributed and not nested:
            shutdown()


def is_main() -> bool:
    """True on rank 0 (and for a single process)."""
    return context().is_main


def main_only(function):
    """Decorator: run ``function`` on rank 0 only (other ranks get ``None``)."""

    def wrapper(*args, **kwargs):
        return function(*args, **kwargs) if is_main() else None

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


def barrier() -> None:
    """Wait for every rank; a no-op for a single process."""
    if context().is_distributed:
        if context().backend == "nccl":
            dist.barrier(device_ids=[context().device.index])
        else:
            dist.barrier()


def shard(n: int, rank: int | None = None, world_size: int | None = None) -> range:
    """The contiguous block of ``range(n)`` that ``rank`` owns.

    Blocks differ in length by at most one (the first ``n % world_size`` ranks get one
    more); a rank may own none when ``n < world_size``. Joined in rank order they are
    ``range(n)``, so members gathered with :func:`gather` come back in index order.
    """
    ctx = context()
    rank = ctx.rank if rank is None else rank
    world_size = ctx.world_size if world_size is None else world_size
    if n < 0:
        raise ValueError(f"cannot shard {n} items")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def _gathered(tensor: torch.Tensor, to_all: bool) -> torch.Tensor | None:
    ctx = context()
    if not ctx.is_distributed:
        return tensor
    local = tensor.detach().cpu()
    parts = [None] * ctx.world_size
    if to_all:
        dist.all_gather_object(parts, local)
    else:
        dist.gather_object(local, parts if ctx.is_main else None, dst=0)
        if not ctx.is_main:
            return None
    return torch.cat([p for p in parts], dim=0).to(tensor.device)


def gather(tensor: torch.Tensor) -> torch.Tensor | None:
    """Every rank's ``tensor`` joined along dim 0 in rank order, on rank 0 (else ``None``).

    The ranks' first dims may differ (e.g. the :func:`shard` of each); the other dims must
    agree. With one process, ``tensor`` itself.
    """
    return _gathered(tensor, to_all=False)


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Like :func:`gather`, with the joined tensor on every rank."""
    return _gathered(tensor, to_all=True)


def broadcast(obj):
    """Rank 0's ``obj`` (any picklable value) on every rank."""
    if not context().is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(value: float) -> float:
    """The mean over ranks of a float (e.g. a loss for the log)."""
    ctx = context()
    if not ctx.is_distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t) / ctx.world_size


# ---------------------------------------------------------------------- sharded ensembles
def member_block(n: int, sharded: bool = True) -> range:
    """The members ``0 .. n-1`` this rank computes: its :func:`shard` if ``sharded``, else all.

    A member's random draws come from a generator seeded by (seed, member index), so the
    ensemble is the same whichever rank computes which member.
    """
    return shard(n) if sharded else range(n)


def gather_members(members: torch.Tensor, block: range):
    """Every rank's ``members (len(block), ...)`` joined in index order, on rank 0.

    Returns ``(tensor, indices)``: on rank 0 of a process group all the members and
    ``range(total)``; on the other ranks ``(None, None)``; for a single process
    ``(members, block)`` unchanged. Ranks with an empty block send an empty tensor.
    """
    if not context().is_distributed:
        return members, block
    joined = gather(members)
    if joined is None:
        return None, None
    return joined, range(joined.shape[0])


def run_on_main(function, *args, **kwargs):
    """``function(*args, **kwargs)`` on rank 0; its result, or its error, on every rank.

    For checks before expensive work (output paths that must not be overwritten): rank 0
    decides once, and an error stops every rank instead of leaving the others waiting in a
    collective. For a single process it is a plain call.
    """
    if not context().is_distributed:
        return function(*args, **kwargs)
    verdict = (None, None)
    if is_main():
        try:
            verdict = (function(*args, **kwargs), None)
        except Exception as error:  # every rank re-raises it below
            verdict = (None, error)
    result, error = broadcast(verdict)
    if error is not None:
        raise error
    return result
