"""Training a :class:`LatentSDE` by SDE matching, torchsde adjoint, or backprop; checkpoints.

All three methods minimise a NELBO with Adam on minibatches of normalised sequences:

- ``matching``: :func:`sciml_diffusion.sde.matching.sde_matching_loss` (no SDE solve);
- ``adjoint``: :func:`sciml_diffusion.sde.baselines.solver_nelbo` with ``sdeint_adjoint``;
- ``backprop``: the same through ``sdeint``.

A run directory holds ``config.json`` (model and training configuration, normaliser, channel
names, step), ``model.pt`` (the ``state_dict``) and ``trainer.pt`` (optimizer, scheduler and
random-generator states), all written atomically, and ``log.jsonl`` (one record per step);
tensors are loaded with ``torch.load(weights_only=True)``. Resuming continues from the
saved step and drops the log records after it (those steps are done again).

Minibatches follow epoch permutations of the sequences drawn from ``(seed, epoch)``
(:class:`~sciml_diffusion.data_parallel.EpochBatches`, position checkpointed). Under
``torchrun`` each process trains a DDP replica of the loss on its rows of each global batch of
``batch_size x world_size`` sequences (disjoint within an epoch), with gradients averaged
over the processes. Every sequence draws its hidden slots, its times and noise (matching)
or its ``z_t0`` noise (solver methods) from its own generator, seeded from one draw of the
shared generator and its position in the global batch
(:func:`~sciml_diffusion.data_parallel.item_generators`); the NELBO is a mean over
sequences, the same number on every process. So ``matching`` takes the step of one process
with the global batch (up to float rounding). The solver methods solve each process's batch
with one ``BrownianInterval``, on the union of that batch's observation times: their paths
are drawn from the same law, not paired with the 1-process run's. Rank 0 alone logs and
writes the run directory.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sciml_diffusion import distributed
from sciml_diffusion.data_parallel import EpochBatches, item_generators, replicate, scale_note
from sciml_diffusion.sde.baselines import solver_nelbo
from sciml_diffusion.sde.latent import LatentSDE, NELBOTerms
from sciml_diffusion.sde.matching import sde_matching_loss
from sciml_diffusion.sde.series import ChannelNormalizer, ObservedSeries

__all__ = [
    "METHODS",
    "TrainConfig",
    "Trainer",
    "Run",
    "posterior_kind",
    "train",
    "save_run",
    "load_run",
]

#: training methods
METHODS = ("matching", "adjoint", "backprop")
#: the training log of a run directory, one JSON record per step
LOG_FILE = "log.jsonl"


@dataclass
class TrainConfig:
    """How to train.

    Parameters
    ----------
    method : {"matching", "adjoint", "backprop"}
    steps : int
        Total optimisation steps (a resumed run continues up to this number).
    batch_size : int
        Sequences per step (per process under ``torchrun``), in epoch permutations.
    lr, lr_final : float
        Adam learning rate, decayed exponentially to ``lr_final`` at ``steps``.
    t_samples : int
        SDE matching: random times per sequence for the path KL.
    dt : float
        Solver step of the adjoint and backprop methods.
    kl_anneal_steps : int
        KL weight rises linearly from ``1 / kl_anneal_steps`` to 1 (0: no annealing).
    hide_fraction : float
        Hide this fraction of each training sequence's observed slots, anew at every step
        (first and last kept): teaches the encoder to fill gaps, for irregular or gappy data.
    grad_clip : float
        Gradient-norm clipping threshold.
    seed : int
        Seeds the minibatches and all noise.
    checkpoint_every : int
        Steps between checkpoints when a run directory is given.
    """

    method: str = "matching"
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    lr_final: float = 3e-4
    t_samples: int = 4
    dt: float = 1e-2
    kl_anneal_steps: int = 0
    hide_fraction: float = 0.0
    grad_clip: float = 10.0
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("steps", "batch_size", "t_samples", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.dt > 0 or not self.lr > 0 or not self.lr_final > 0:
            raise ValueError("dt, lr and lr_final must be > 0")
        if not 0 <= self.hide_fraction < 1:
            raise ValueError(f"hide_fraction must be in [0, 1), got {self.hide_fraction}")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def posterior_kind(method: str) -> str:
    """The ``LatentSDE(posterior=...)`` a method trains: marginals or a drift network."""
    return "marginal" if method == "matching" else "drift"


class Trainer:
    """Optimisation state of one run.

    Parameters
    ----------
    model : LatentSDE
        Built with ``posterior=posterior_kind(config.method)``.
    series : ObservedSeries
        Normalised training sequences.
    config : TrainConfig
    """

    def __init__(self, model: LatentSDE, series: ObservedSeries, config: TrainConfig):
        if model.posterior != posterior_kind(config.method):
            raise ValueError(
                f"method {config.method!r} trains a LatentSDE with posterior="
                f"{posterior_kind(config.method)!r}, got {model.posterior!r}"
            )
        self.model, self.series, self.config = model, series, config
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        gamma = (config.lr_final / config.lr) ** (1.0 / config.steps)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.batches = EpochBatches(len(series), config.batch_size, config.seed)
        self.replica = replicate(model, self._terms)
        self.step_count = 0
        self.train_seconds = 0.0

    @property
    def kl_weight(self) -> float:
        anneal = self.config.kl_anneal_steps
        return 1.0 if anneal <= 0 else min(1.0, (self.step_count + 1) / anneal)

    def loss_terms(self, batch: ObservedSeries, generator=None) -> NELBOTerms:
        """The method's NELBO terms on a normalised batch (draws from ``generator``: one, or
        one per sequence)."""
        return self._terms(self.model, batch, generator or self.generator)

    def _terms(self, model, batch, generator) -> NELBOTerms:
        if self.config.method == "matching":
            return sde_matching_loss(model, batch, self.config.t_samples, generator)
        return solver_nelbo(model, batch, self.config.method, self.config.dt, generator)

    def step(self) -> float:
        """One optimisation step; returns the batch-mean NELBO (normalised units)."""
        begin = time.perf_counter()
        self.model.train()
        batch = self.series[self.batches.next().to(self.series.times.device)]
        rows = self.batches.rows
        generators = item_generators(self.generator, rows.stop - rows.start, rows.start)
        if self.config.hide_fraction > 0:
            batch = batch.hide_random(self.config.hide_fraction, generators)
        terms = self.replica(batch, generators)
        loss = terms.total(self.kl_weight)
        mean_loss = distributed.all_reduce_mean(float(loss.detach()))
        if not math.isfinite(mean_loss):
            raise FloatingPointError(
                f"the {self.config.method} loss became {mean_loss} at step "
                f"{self.step_count}; lower lr or dt, or raise kl_anneal_steps"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step_count += 1
        self.train_seconds += time.perf_counter() - begin
        return distributed.all_reduce_mean(float(terms.nelbo.detach().mean()))

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "step": torch.tensor(self.step_count),
            "position": torch.tensor(self.batches.position),
            "train_seconds": torch.tensor(self.train_seconds, dtype=torch.float64),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.step_count = int(state["step"])
        default = self.step_count * self.batches.global_batch  # a checkpoint without it
        self.batches.position = int(state.get("position", default))
        self.train_seconds = float(state["train_seconds"])
        self.rebuild_schedule()

    def rebuild_schedule(self) -> None:
        """Decay from the current learning rate to ``lr_final`` at ``config.steps``.

        A run resumed with more (or fewer) total steps than it was started with keeps a
        smooth exponential decay that still ends at ``lr_final``.
        """
        remaining = self.config.steps - self.step_count
        if remaining <= 0:
            return
        current = self.optimizer.param_groups[0]["lr"]
        self.scheduler.gamma = (self.config.lr_final / current) ** (1.0 / remaining)


@dataclass
class Run:
    """A trained model with what is needed to use it."""

    model: LatentSDE
    normalizer: ChannelNormalizer
    config: TrainConfig
    channels: list[str]
    trainer_state: dict | None


def train(
    model: LatentSDE,
    series: ObservedSeries,
    config: TrainConfig,
    normalizer: ChannelNormalizer | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    channels: list[str] | None = None,
    callback: Callable[[Trainer], None] | None = None,
    progress: bool = True,
) -> Trainer:
    """Train ``model`` on ``series`` (data units) up to ``config.steps`` steps.

    Parameters
    ----------
    normalizer : ChannelNormalizer, optional
        Fitted on ``series`` when not given.
    run_dir : path, optional
        Where checkpoints go (every ``config.checkpoint_every`` steps and at the end).
    resume : bool
        Continue from the checkpoint in ``run_dir`` (its weights replace ``model``'s).
    callback : callable, optional
        Called with the trainer after every step (and after any checkpoint of that step).
    """
    normalizer = normalizer or ChannelNormalizer.fit(series)
    device = model.initial_mean.device
    trainer = Trainer(model, normalizer.normalize(series).to(device), config)
    main = distributed.is_main()
    if resume:
        if run_dir is None:
            raise ValueError("resume needs the run directory to continue from")
        distributed.barrier()  # a checkpoint rank 0 wrote is complete before it is read back
        previous = load_run(run_dir, device)
        if previous.trainer_state is None:
            raise ValueError(f"{run_dir} has no trainer.pt; it cannot be resumed")
        model.load_state_dict(previous.model.state_dict())
        trainer.load_state_dict(previous.trainer_state)
    write = run_dir is not None and main
    if write:
        _truncate_log(Path(run_dir), trainer.step_count)
    progress = progress and main
    if main and distributed.context().is_distributed:
        note = scale_note("a latent SDE", config.batch_size, config.lr)
        print(note, file=sys.stderr)
    bar = tqdm(
        total=config.steps, initial=trainer.step_count, disable=not progress, desc=config.method
    )
    while trainer.step_count < config.steps:
        nelbo = trainer.step()
        bar.update(1)
        bar.set_postfix(nelbo=f"{nelbo:.3g}")
        if write:
            _log(Path(run_dir), {"step": trainer.step_count, "nelbo": nelbo})
        if write and trainer.step_count % config.checkpoint_every == 0:
            save_run(run_dir, trainer, normalizer, channels)
        if callback is not None:
            callback(trainer)
    bar.close()
    if write:
        save_run(run_dir, trainer, normalizer, channels)
    distributed.barrier()  # the run directory is complete before any rank goes on
    return trainer


def save_run(
    run_dir: str | Path,
    trainer: Trainer,
    normalizer: ChannelNormalizer,
    channels: list[str] | None = None,
) -> None:
    """Write ``config.json``, ``model.pt`` and ``trainer.pt`` atomically into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dim = trainer.model.config["data_dim"]
    config = {
        "model": trainer.model.config,
        "train": asdict(trainer.config),
        "normalizer": normalizer.to_dict(),
        "channels": list(channels) if channels else [f"c{i}" for i in range(data_dim)],
        "step": trainer.step_count,
        "train_seconds": trainer.train_seconds,
    }
    _atomic_torch_save(trainer.model.state_dict(), run_dir / "model.pt")
    _atomic_torch_save(trainer.state_dict(), run_dir / "trainer.pt")
    tmp = run_dir / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, run_dir / "config.json")


def load_run(run_dir: str | Path, device: torch.device | str = "cpu") -> Run:
    """Load a run directory written by :func:`save_run`.

    Raises
    ------
    FileNotFoundError
        Without ``config.json``.
    ValueError
        For a damaged run (unreadable JSON or tensors) or a folder of another kind (a
        diffusion prior run), naming the file.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} not found; pass the run directory written by 'sde train'"
        )
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_path} is damaged (not JSON: {error})") from None
    if not isinstance(config, dict) or not {"model", "train", "normalizer"} <= set(config):
        kind = config.get("format", "unknown") if isinstance(config, dict) else "unknown"
        raise ValueError(
            f"{run_dir} is not a latent SDE run (its config.json is of kind {kind!r}); pass a "
            "folder written by 'sde train'"
        )
    try:
        model = LatentSDE.from_config(config["model"]).to(device)
        model.load_state_dict(_load_tensors(run_dir / "model.pt", device))
        normalizer = ChannelNormalizer.from_dict(config["normalizer"])
        train_config = TrainConfig.from_dict(config["train"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"{run_dir} is damaged: {str(error).splitlines()[0]}") from None
    trainer_path = run_dir / "trainer.pt"
    trainer_state = _load_tensors(trainer_path, "cpu") if trainer_path.is_file() else None
    return Run(model, normalizer, train_config, config["channels"], trainer_state)


def _load_tensors(path: Path, device) -> dict:
    """``torch.load(weights_only=True)``; a damaged or missing file is a one-line error."""
    if not path.is_file():
        raise ValueError(f"{path} is missing; the run folder is incomplete")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for cut-short or foreign files
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path} is damaged or not a checkpoint ({detail[:100]})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a checkpoint of 'sde train'")
    return state


def _log(run_dir: Path, record: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOG_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(run_dir: Path, step: int) -> None:
    """Keep the log records up to ``step`` (the checkpoint a resumed run continues from)."""
    path = run_dir / LOG_FILE
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue  # a record cut short by the interruption
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
