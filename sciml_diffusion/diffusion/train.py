"""Training a function-space diffusion prior: :func:`train_prior`.

AdamW on the EDM denoising loss (:func:`~sciml_diffusion.diffusion.loss.edm_loss`) with a
linear learning-rate warm-up, gradient-norm clipping and an exponential moving average
(EMA) of the weights, decay :math:`\\min(\\beta, (1 + k) / (10 + k))` at step :math:`k`.
Batches follow epoch permutations of the training samples drawn from ``(seed, epoch)``
(:class:`~sciml_diffusion.data_parallel.EpochBatches`); every other random draw
(subsampling strides, noise levels, noise) comes from one ``torch.Generator`` whose state is
checkpointed with the model, EMA, optimiser and position in the epochs, so a resumed run
continues exactly as if it had never stopped. Optional multi-resolution training draws a
stride per step and trains on the subsampled grid.

Under ``torchrun`` every process trains a :class:`~torch.nn.parallel.DistributedDataParallel`
replica on its rows of each global batch of ``batch_size x world_size`` samples; the stride,
noise levels and noise are drawn for the whole global batch on every rank from the shared
generator, each rank using its rows, and each rank's masked-mean loss is weighted by its
share of the valid points, so a step on ``W`` processes with ``batch_size`` is the step of one
process with ``W x batch_size`` (up to float rounding). Rank 0 alone writes the run folder.

Batches come from a reader (:mod:`sciml_diffusion.fields.batches`): data in memory are
normalised once and held on the device; lazy (dask) data, e.g. a Zarr store larger than
memory, are read per batch (under ``torchrun`` each rank reads only its rows), and the
normalisation statistics, ``sigma_data`` and the Dirichlet check are computed by streaming
passes over the data.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import scipy.sparse.linalg  # noqa: F401  (makes sparse.linalg available)
import torch
from scipy import sparse
from tqdm.auto import tqdm

from sciml_diffusion import distributed
from sciml_diffusion.data_parallel import (
    EpochBatches,
    Means,
    decided_on_main,
    replicate,
    scale_note,
)
from sciml_diffusion.diffusion.acceleration import bf16_autocast, compile_denoiser
from sciml_diffusion.diffusion.boundary import boundary_mask
from sciml_diffusion.diffusion.loss import draw_noise, edm_loss
from sciml_diffusion.diffusion.noise import (
    GRFNoise,
    NoiseProcess,
    StationaryGRFNoise,
    WhiteNoise,
)
from sciml_diffusion.diffusion.prior import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    FORMAT,
    LAYOUT_FILE,
    NORMALIZER_FILE,
    Prior,
    build_denoiser,
    check_resumable,
    load_checkpoint,
    read_run_config,
)
from sciml_diffusion.fields import FieldDataset, Grid, Normalizer, resample
from sciml_diffusion.fields.batches import LazyBatches, TensorBatches
from sciml_diffusion.fields.io import atomic_path
from sciml_diffusion.fields.normalize import Moments, normalized_std, streaming_moments

__all__ = ["TrainConfig", "train_prior", "NonFiniteLossError"]

#: the training log, one JSON record per step
LOG_FILE = "log.jsonl"

#: settings that may change when a run is resumed (bf16, compile and pin_memory change
#: only the speed)
RESUMABLE = (
    "steps",
    "checkpoint_every",
    "val_every",
    "device",
    "progress",
    "bf16",
    "compile",
    "pin_memory",
)


class NonFiniteLossError(ValueError):
    """The loss or gradient became NaN/inf; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Settings of :func:`train_prior` (all JSON-serialisable).

    Parameters
    ----------
    variables : list of str, optional
        Channels, in order (default: every variable of the data set).
    width, n_layers, n_modes : int
        Backbone width, number of blocks and Fourier modes per axis.
    noise : str
        ``"grf"`` (function-space) or ``"white"``.
    noise_alpha, noise_tau : float
        GRF noise covariance ``(-Laplacian + tau^2)^(-alpha)``, scaled to unit node
        variance on the training grid; ``noise_alpha`` defaults to ``d/2 + 0.5``.
    noise_boundary : str, optional
        GRF noise along bounded axes: ``"stationary"`` (a periodic field on a doubled box,
        cropped: the same variance at every node, :class:`StationaryGRFNoise`) or
        ``"neumann"`` (cosine modes: 2x the variance on edges, 4x in corners). Default
        ``"stationary"``; periodic axes are always periodic.
    dirichlet : dict, optional
        ``{variable: value}``: variables fixed to ``value`` (physical units) on the boundary
        nodes of the bounded axes; the denoiser outputs the value there in training and
        sampling. The data must hold it (checked).
    p_mean, p_std : float
        Log-normal training noise levels, :math:`\\ln\\sigma \\sim N(P_{mean}, P_{std}^2)`.
        ``p_mean`` defaults to :math:`-1.2 + \\ln\\sigma_{data}`: -1.2 for normalised data,
        measured on Darcy against EDM's scaling from data of std 0.5, -1.2 + ln 2 = -0.51
        (PDE residual of generated pairs 7.0 vs 9.2, ``docs/results/prior_darcy.md``).
    steps, batch_size, lr, weight_decay, warmup, grad_clip, ema_decay
        Optimisation.
    resolution : int or list of int, optional
        Resample the data onto a regular grid of this many nodes per axis (an int for
        every axis, or one per axis) first. In memory only: lazy data (larger than memory)
        must be resampled on disk beforehand.
    subsample : list of int
        Strides drawn uniformly per step (multi-resolution training); ``[1]`` is off. A
        stride must keep the domain: divide ``n - 1`` on bounded axes and ``n`` on periodic
        ones (e.g. 129 or 65 bounded nodes for strides 1 and 2).
    val_fraction, val_every, val_samples
        Held-out fraction of the samples, how often and on how many the EMA model's
        validation loss is computed. The normaliser is fitted on the training samples only.
    checkpoint_every : int
        Steps between checkpoints (and at the end).
    seed : int
        Seeds the initial weights, the split and every training draw.
    device : str
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ...
    bf16 : bool
        bf16 autocast around the network call on CUDA (a no-op on CPU); the loss, the noise
        and the optimiser stay float32 (:mod:`~sciml_diffusion.diffusion.acceleration`).
    compile : bool
        Train through ``torch.compile`` of the denoiser (falls back to eager with a warning
        if compilation fails); checkpoints hold the plain module's weights.
    pin_memory : bool
        Batches read from lazy data go through page-locked memory to a CUDA device
        (``non_blocking``); no effect on CPU or for data held in memory.
    """

    variables: list[str] | None = None
    width: int = 32
    n_layers: int = 4
    n_modes: int = 12
    noise: str = "grf"
    noise_alpha: float | None = None
    noise_tau: float = 20.0
    noise_boundary: str | None = None
    dirichlet: dict[str, float] | None = None
    p_mean: float | None = None
    p_std: float = 1.2
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    resolution: int | list[int] | None = None
    subsample: list[int] = field(default_factory=lambda: [1])
    val_fraction: float = 0.1
    val_every: int = 250
    val_samples: int = 64
    checkpoint_every: int = 250
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    compile: bool = False
    pin_memory: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        if not isinstance(data, dict):
            raise ValueError(
                f"training settings must be a JSON object of name: value, got "
                f"{type(data).__name__}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**data)

    def validate(self) -> None:
        self._check_types()
        if self.noise not in ("grf", "white"):
            raise ValueError(f"noise must be 'grf' or 'white', got {self.noise!r}")
        if self.noise_boundary not in (None, "stationary", "neumann"):
            raise ValueError(
                f"noise_boundary must be 'stationary' or 'neumann', got {self.noise_boundary!r}"
            )
        positive = ("width", "n_layers", "n_modes", "steps", "batch_size")
        for name in (*positive, "checkpoint_every", "val_every", "val_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "grad_clip", "p_std", "noise_tau"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        sizes = self.resolution if isinstance(self.resolution, list) else [self.resolution]
        if self.resolution is not None and any(n < 2 for n in sizes):
            raise ValueError(f"resolution must be >= 2 nodes per axis, got {self.resolution}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not self.subsample or any(int(s) < 1 for s in self.subsample):
            raise ValueError(f"subsample strides must be >= 1, got {self.subsample}")

    def _check_types(self) -> None:
        """Each setting has its default's type (a config file may say ``"steps": "ten"``)."""
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if callable(f.default_factory) else f.default
            if value is None and default is None:
                continue
            if f.name == "variables" or f.name == "subsample":
                kind = str if f.name == "variables" else int
                ok = isinstance(value, list) and all(
                    isinstance(v, kind) and not isinstance(v, bool) for v in value
                )
                expected = f"a list of {kind.__name__}"
            elif f.name == "resolution":
                ok = _is_int(value) or (isinstance(value, list) and all(map(_is_int, value)))
                expected = "an int or a list of ints"
            elif f.name == "noise_boundary":
                ok, expected = isinstance(value, str), "a string"
            elif f.name == "dirichlet":
                ok = isinstance(value, dict) and all(
                    isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                    for k, v in value.items()
                )
                expected = "an object of variable: number"
            elif f.name in ("noise_alpha", "p_mean") or isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                expected = "a number"
            else:
                ok = isinstance(value, type(default)) and (
                    isinstance(default, bool) or not isinstance(value, bool)
                )
                expected = _TYPE_NAMES.get(type(default), type(default).__name__)
            if not ok:
                raise ValueError(f"training setting {f.name} must be {expected}, got {value!r}")


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def train_prior(
    dataset: FieldDataset,
    config: TrainConfig | dict | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Prior:
    """Train a diffusion prior on the fields of ``dataset``.

    Parameters
    ----------
    dataset : FieldDataset
        Training data (``sample`` dim, no ``time``); NaN points are excluded from the loss.
    config : TrainConfig or dict
    out : path, optional
        Run directory for ``config.json``, ``normalizer.json``, ``checkpoint.pt`` and
        ``log.jsonl``; without it nothing is written.
    resume : bool
        Continue the run in ``out`` from its checkpoint (model, EMA, optimiser, step, RNG).
    progress : bool
        Show a tqdm bar with the loss.

    Returns
    -------
    Prior
        With the EMA weights.

    Raises
    ------
    NonFiniteLossError
        When the loss turns NaN/inf: names the step; the last checkpoint is left as it was.
    ValueError
        For data or a run directory that do not fit the config.
    """
    config = _as_config(config)
    run = _Run(dataset, config, Path(out) if out is not None else None, resume)
    return run.train(progress)


class _Run:
    """State of one training run (kept in one object so resume restores all of it)."""

    def __init__(self, dataset, config: TrainConfig, out: Path | None, resume: bool):
        if resume and out is None:
            raise ValueError("resume=True needs the run directory (out=...)")
        if not isinstance(dataset, FieldDataset):
            raise ValueError(f"train_prior takes a FieldDataset, got {type(dataset).__name__}")
        if dataset.has_time:
            raise ValueError("the data have a time dim; select one time or stack it into samples")
        self.config, self.out = config, out
        self.device = _device(config.device)
        if distributed.context().is_distributed:
            self.device = distributed.context().device
        previous = decided_on_main(_check_run_dir, out, config, resume)
        variables = config.variables or list(dataset.variables)
        train_idx, val_idx = _split(len(dataset), config)
        moments = None if previous else _train_moments(dataset, variables, train_idx)
        normalizer = (
            Normalizer.load(out / NORMALIZER_FILE)
            if previous
            else Normalizer.from_moments(moments, dataset.grid.ndim)
        )
        self.data, grid = _reader(dataset, variables, normalizer, config, self.device)
        if previous and Grid.from_dict(previous["grid"]) != grid:
            raise ValueError(
                f"the data's grid {grid} differs from the run's training grid "
                f"{Grid.from_dict(previous['grid'])}; resume with the same data"
            )
        for stride in config.subsample:
            _check_stride(grid, int(stride))
        self.grid = grid
        self.train_idx, self.val_idx = train_idx, val_idx
        self.normalizer = normalizer
        self.run_config = previous or _run_config(
            config,
            variables,
            grid,
            _sigma_data(self.data, train_idx, moments if grid == dataset.grid else None),
            self.data.shape[1],
            _pinned(config, variables, self.data, grid, normalizer),
        )
        self.noise = _noise(self.run_config)
        self.p_mean = _p_mean(config, self.run_config["sigma_data"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = build_denoiser(self.run_config).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.network = compile_denoiser(self.model, config.compile)  # what the loss calls
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.batches = EpochBatches(len(train_idx), config.batch_size, config.seed)
        self.step, self.saved_step = 0, None
        self.layout = dataset.layout(variables)
        distributed.barrier()  # every rank has read the run folder before rank 0 writes
        if previous and (out / CHECKPOINT_FILE).exists():
            self._restore(load_checkpoint(out, self.device))
            self._write_run_files(normalizer=False)  # with the new steps, device, ...
        elif out is not None:  # a new run, or one stopped before its first checkpoint
            self._write_run_files(normalizer=True)
        if distributed.is_main():
            self._truncate_log()
        distributed.barrier()
        self.replica = replicate(self.model, self._loss)

    # ------------------------------------------------------------------ loop
    def train(self, progress: bool) -> Prior:
        config = self.config
        progress = progress and distributed.is_main()
        if distributed.is_main() and distributed.context().is_distributed:
            print(scale_note("a prior", config.batch_size, config.lr), file=sys.stderr)
        bar = tqdm(
            total=config.steps, initial=self.step, desc="training prior", disable=not progress
        )
        while self.step < config.steps:
            loss = self._train_step()
            self.step += 1
            bar.update(1)
            record = {"step": self.step, "loss": loss}
            if (
                self.val_idx.numel()
                and distributed.is_main()
                and (self.step % config.val_every == 0 or self.step == config.steps)
            ):
                record["val_loss"] = self.validation_loss()
            bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k != "step"})
            self._log(record)
            if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                self.save()
        bar.close()
        distributed.barrier()  # the last checkpoint is written before any rank goes on
        self.ema.eval()
        return Prior(
            self.ema, self.noise, self.normalizer, self.grid, self.run_config, layout=self.layout
        )

    def _train_step(self) -> float:
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, (self.step + 1) / max(config.warmup, 1))
        idx = self.train_idx[self.batches.next()].to(self.device)
        stride = config.subsample[
            int(torch.randint(len(config.subsample), (1,), generator=self.generator))
        ]
        x, mask, grid = _subsample(*self.data.batch(idx), self.grid, int(stride))
        shape = (self.batches.global_batch, *x.shape[1:])
        sigma, n = draw_noise(
            shape, self.noise, grid, self.generator, self.p_mean, config.p_std, x.device
        )
        rows = self.batches.rows
        self.model.train()
        with bf16_autocast(x.device, config.bf16):
            loss = self.replica(x, mask, grid, sigma[rows], n[rows])
        # weighted by this rank's share of the valid points: the global batch's mean
        loss, reported = Means.of(loss, mask.expand_as(x).sum()).share()
        self._check_finite(reported, "loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self._check_finite(norm, "gradient norm")
        self.optimizer.step()
        self._update_ema()
        return float(reported)

    def _loss(self, model, x, mask, grid, sigma, n) -> torch.Tensor:
        """The EDM loss of this rank's rows (the forward that DDP wraps).

        The network called is ``self.network``: ``model`` itself, or its ``torch.compile``
        wrapper, which shares its parameters (so DDP's gradient hooks fire either way).
        """
        network = self.network if model is self.model else model
        return edm_loss(
            network,
            x,
            self.noise,
            grid,
            mask=mask,
            p_mean=self.p_mean,
            p_std=self.config.p_std,
            sigma=sigma,
            n=n,
        )

    def _update_ema(self) -> None:
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for ema, p in zip(self.ema.parameters(), self.model.parameters()):
                ema.lerp_(p, 1 - decay)

    def _check_finite(self, value: torch.Tensor, what: str) -> None:
        if torch.isfinite(value).all():
            return
        kept = (
            f"the last good checkpoint (step {self.saved_step}) in {self.out} is kept"
            if self.saved_step is not None
            else "no checkpoint had been written yet"
        )
        raise NonFiniteLossError(
            f"training stopped at step {self.step + 1}: the {what} is "
            f"{float(value.detach())}; {kept}. "
            "Lower the learning rate, check the data for extreme values, or resume."
        )

    @torch.no_grad()
    def validation_loss(self) -> float:
        """EMA-model loss on the held-out samples, with fixed noise (comparable over steps)."""
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        idx = self.val_idx[: self.config.val_samples].to(self.device)
        self.ema.eval()
        total, count = 0.0, 0
        for chunk in idx.split(self.config.batch_size):
            x, mask = self.data.batch(chunk)
            loss = edm_loss(
                self.ema,
                x,
                self.noise,
                self.grid,
                generator=generator,
                mask=mask,
                p_mean=self.p_mean,
                p_std=self.config.p_std,
            )
            total, count = total + float(loss) * len(chunk), count + len(chunk)
        return total / count

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        if self.out is None:
            return
        self.saved_step = self.step
        if not distributed.is_main():
            return
        state = {
            "format": FORMAT,
            "step": self.step,
            "position": self.batches.position,
            "processes": distributed.context().world_size,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.generator.get_state(),
        }
        with atomic_path(self.out / CHECKPOINT_FILE) as tmp:
            torch.save(state, tmp)

    def _write_run_files(self, normalizer: bool) -> None:
        """Rank 0 writes the run config (and, for a new run, normaliser and layout)."""
        if not distributed.is_main():
            return
        if normalizer:
            self.out.mkdir(parents=True, exist_ok=True)
            self.normalizer.save(self.out / NORMALIZER_FILE)
            self.layout.save(self.out / LAYOUT_FILE)
        _write_json(self.out / CONFIG_FILE, self.run_config)

    def _restore(self, state: dict) -> None:
        missing = {"model", "optimizer", "rng"} - set(state)
        if missing:
            raise ValueError(
                f"the checkpoint in {self.out} lacks {sorted(missing)}; cannot resume"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as error:
            raise ValueError(
                f"the checkpoint in {self.out} does not fit its config: "
                f"{str(error).splitlines()[0]}"
            ) from error
        self.generator.set_state(state["rng"].cpu())
        self.step = self.saved_step = int(state["step"])
        # where the epochs stood (older checkpoints: where this world size would be)
        self.batches.position = int(state.get("position", self.step * self.batches.global_batch))

    def _log(self, record: dict) -> None:
        if self.out is not None and distributed.is_main():
            with open(self.out / LOG_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _truncate_log(self) -> None:
        """Drop log records after the checkpoint's step (they are about to be redone)."""
        if self.out is None or not (self.out / LOG_FILE).exists():
            return
        kept = []
        for line in (self.out / LOG_FILE).read_text().splitlines():
            try:
                if int(json.loads(line)["step"]) <= self.step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the interruption
        with atomic_path(self.out / LOG_FILE) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in kept))


# ---------------------------------------------------------------------- helpers
def _as_config(config) -> TrainConfig:
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    config.validate()
    return config


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"device {name!r} is not a torch device; use cpu, cuda or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: this machine has no CUDA device; use cpu")
    return device


def _check_run_dir(out: Path | None, config: TrainConfig, resume: bool) -> dict | None:
    """The previous run config when resuming; refuses to overwrite an existing run."""
    if out is None:
        return None
    if not resume:
        if (out / CHECKPOINT_FILE).exists() or (out / CONFIG_FILE).exists():
            raise FileExistsError(
                f"{out} already holds a prior run; pass --resume to continue it (a run stopped "
                "before its first checkpoint restarts from step 0) or choose a new folder "
                "(nothing was overwritten)"
            )
        return None
    if not (out / CONFIG_FILE).exists():
        raise FileNotFoundError(
            f"nothing to resume in {out}: it holds no {CONFIG_FILE}; train without --resume"
        )
    previous = read_run_config(out)
    old, new = previous["train"], asdict(config)
    check_resumable(out, old, new, RESUMABLE)
    previous["train"] = new
    return previous


def _reader(dataset: FieldDataset, variables, normalizer: Normalizer, config, device):
    """The batch reader of the training data and its grid.

    Lazy data are read per batch (:class:`LazyBatches`); data in memory are prepared once
    (:func:`_prepare`) and held on the device (:class:`TensorBatches`).
    """
    if not dataset.is_lazy or "sample" not in dataset.xarray.dims:
        x, mask, grid = _prepare(dataset, variables, normalizer, config)
        return TensorBatches(x, mask, device), grid
    _check_variables(dataset, variables, normalizer)
    grid = dataset.grid
    if config.resolution is not None and grid.shape != grid.with_shape(config.resolution).shape:
        raise ValueError(
            f"resolution={config.resolution} resamples the whole data set in memory, but these "
            f"data are read lazily from disk (grid {grid}); resample the file first, or open "
            "it with chunks=False if it fits in memory"
        )
    reader = LazyBatches(dataset, variables, normalizer, device, pin_memory=config.pin_memory)
    return reader, grid


def _check_variables(dataset: FieldDataset, variables, normalizer: Normalizer) -> None:
    if list(normalizer.variables) != list(variables):
        raise ValueError(
            f"the run was trained on variables {list(normalizer.variables)}, got {variables}"
        )
    missing = [v for v in variables if v not in dataset.variables]
    if missing:
        raise ValueError(f"variables {missing} not in the data; available: {dataset.variables}")


def _prepare(dataset: FieldDataset, variables, normalizer: Normalizer, config: TrainConfig):
    """Normalised tensor, mask and grid of the training data (resampled if asked)."""
    _check_variables(dataset, variables, normalizer)
    grid = dataset.grid
    x = normalizer.normalize(dataset.to_tensor(variables))
    mask = dataset.mask(variables)
    x = torch.where(mask, x, torch.zeros_like(x))
    if not torch.isfinite(x).all():
        raise ValueError("the training data contain infinite values; remove or mask them (NaN)")
    if config.resolution is not None and grid.shape != (config.resolution,) * grid.ndim:
        target = grid.with_shape(config.resolution)
        mask = mask.expand_as(x)
        x = resample(_fill_masked(x, mask, grid), grid, target)
        mask = _resample_mask(mask, grid, target)
        x, grid = torch.where(mask, x, torch.zeros_like(x)), target
    return x.float(), mask, grid


def _fill_masked(x: torch.Tensor, mask: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``x`` with its masked points replaced by the biharmonic fill of the valid ones.

    The fill solves the grid-graph biharmonic equation ``L^2 x = 0`` (``L`` the
    nearest-neighbour Laplacian, periodic axes wrapping) on the masked points with the valid
    values as boundary data, so the filled field is smooth across the mask's edge: no jump to
    0 to ring under spectral resampling, no kink either. One sparse LU per mask pattern.
    """
    if bool(mask.all()):
        return x
    flat_x = x.reshape(-1, grid.size).double().numpy().copy()
    flat_m = mask.reshape(-1, grid.size).numpy()
    laplacian = _grid_laplacian(grid)
    laplacian = (laplacian @ laplacian).tocsr()
    patterns, which = np.unique(flat_m, axis=0, return_inverse=True)
    for p, valid in enumerate(patterns):
        rows = np.flatnonzero(which.reshape(-1) == p)
        if valid.all() or not valid.any():
            continue
        hole = ~valid
        block = laplacian[hole][:, hole] + 1e-12 * sparse.identity(int(hole.sum()))
        solve = sparse.linalg.splu(block.tocsc())
        rhs = -(laplacian[hole][:, valid] @ flat_x[rows][:, valid].T)
        flat_x[np.ix_(rows, np.flatnonzero(hole))] = solve.solve(rhs).T
    return torch.from_numpy(flat_x).to(x.dtype).reshape(x.shape)


def _grid_laplacian(grid: Grid):
    """Sparse graph Laplacian ``(N, N)`` of the grid's nearest-neighbour graph."""
    eye = [sparse.identity(n, format="csr") for n in grid.shape]
    total = sparse.csr_matrix((grid.size, grid.size))
    for axis, (n, periodic) in enumerate(zip(grid.shape, grid.periodic)):
        step = sparse.diags([np.ones(n - 1)], [1], shape=(n, n), format="lil")
        if periodic:
            step[n - 1, 0] = 1.0
        adjacency = (step + step.T).tocsr()
        degree = sparse.diags(np.asarray(adjacency.sum(1)).ravel())
        factors = [*eye[:axis], degree - adjacency, *eye[axis + 1 :]]
        term = factors[0]
        for f in factors[1:]:
            term = sparse.kron(term, f, format="csr")
        total = total + term
    return total.tocsr()


def _resample_mask(mask: torch.Tensor, source: Grid, target: Grid) -> torch.Tensor:
    """A target node is valid iff every source node its linear stencil touches is valid.

    A target node on a valid source node is kept; periodic axes wrap around.
    """
    out = mask
    for axis in range(source.ndim):
        dim = out.ndim - source.ndim + axis
        c, t, n = source.coords[axis], target.coords[axis], source.shape[axis]
        h = (c[-1] - c[0]) / (n - 1)
        pos = (t - c[0]) / h
        pos = np.mod(pos, n) if source.periodic[axis] else np.clip(pos, 0, n - 1)
        left = np.floor(pos + 1e-9).astype(np.int64) % n
        weight = pos - np.floor(pos + 1e-9)
        right = (left + 1) % n if source.periodic[axis] else np.minimum(left + 1, n - 1)
        shape = [1] * out.ndim
        shape[dim] = -1
        needs_right = torch.as_tensor(np.abs(weight) > 1e-9).reshape(shape)
        a = out.index_select(dim, torch.as_tensor(left))
        b = out.index_select(dim, torch.as_tensor(right))
        out = a & (b | ~needs_right)
    return out


def _train_moments(dataset: FieldDataset, variables, train_idx: torch.Tensor) -> dict:
    """Per-variable :class:`Moments` of the training samples (never the validation ones).

    One streaming pass (lazy data are read a block at a time); they give the
    :class:`Normalizer` and, without resampling, ``sigma_data``.
    """
    missing = [v for v in variables if v not in dataset.variables]
    if missing:
        raise ValueError(f"variables {missing} not in the data; available: {dataset.variables}")
    if "sample" in dataset.xarray.dims:
        dataset = dataset.isel(sample=train_idx.sort().values.numpy())
    return streaming_moments(dataset, variables)


def _p_mean(config: TrainConfig, sigma_data: float) -> float:
    """``config.p_mean``, or -1.2 (measured for unit-variance data) moved to ``sigma_data``."""
    if config.p_mean is not None:
        return float(config.p_mean)
    return -1.2 + math.log(sigma_data)


def _split(n: int, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed))
    n_val = int(round(config.val_fraction * n)) if n > 1 else 0
    n_val = min(n_val, n - 1)
    return order[n_val:], order[:n_val]


def _sigma_data(data, train_idx: torch.Tensor, moments: dict | None = None) -> float:
    """Standard deviation (``n - 1``) of the valid normalised training values.

    From the per-variable ``moments`` of the raw training values when given (no pass over
    the data: each is rescaled by the normaliser of :meth:`Normalizer.from_moments`);
    otherwise streamed over the reader's blocks. Either way parts are merged with Chan et
    al.'s update (:class:`Moments`).
    """
    if moments is not None:
        return normalized_std(moments, Normalizer.from_moments(moments, spatial_ndim=1))
    total = Moments()
    for x, mask in data.blocks(train_idx):
        total = total.merge(Moments.of(x[mask.expand_as(x)].double().cpu().numpy()))
    if total.count < 2:
        return 1.0
    return math.sqrt(total.m2 / (total.count - 1))


def _run_config(config, variables, grid: Grid, sigma_data: float, channels: int, pinned) -> dict:
    noise = _training_noise(config, grid)
    return {
        "format": FORMAT,
        "variables": list(variables),
        "grid": grid.to_dict(),
        "noise": noise.to_dict(),
        "sigma_data": sigma_data,
        "model": {
            "channels": channels,
            "n_modes": [config.n_modes] * grid.ndim,
            "width": config.width,
            "n_layers": config.n_layers,
            "cond_channels": 0,
            "domain": [list(b) for b in grid.bounds],
            "pinned": pinned,
        },
        "train": asdict(config),
    }


def _training_noise(config: TrainConfig, grid: Grid) -> NoiseProcess:
    """The noise process of a new run, at unit node variance on the training grid."""
    if config.noise == "white":
        return WhiteNoise()
    alpha = config.noise_alpha if config.noise_alpha is not None else grid.ndim / 2 + 0.5
    if all(grid.periodic) or (config.noise_boundary or "stationary") == "neumann":
        return GRFNoise.unit_variance(grid, alpha, config.noise_tau)
    return StationaryGRFNoise.unit_variance(grid, alpha, config.noise_tau)


def _pinned(config: TrainConfig, variables, data, grid: Grid, normalizer) -> list:
    """``[(channel, normalised value)]`` of the Dirichlet variables, checked on the data.

    The data (a batch reader) are read a block at a time.
    """
    if not config.dirichlet:
        return []
    if all(grid.periodic):
        raise ValueError("dirichlet variables need a bounded axis; every axis is periodic")
    where = boundary_mask(grid.shape, grid.periodic)
    out = []
    for name, value in config.dirichlet.items():
        if name not in variables:
            raise ValueError(f"dirichlet variable {name!r} is not trained; have {variables}")
        c = list(variables).index(name)
        normalized = (float(value) - normalizer.mean[c]) / normalizer.std[c]
        worst = 0.0
        for x, mask in data.blocks():
            edge = x[:, c][:, where][mask[:, min(c, mask.shape[1] - 1)][:, where]]
            if edge.numel():
                worst = max(worst, float((edge - normalized).abs().max()))
        if worst > 1e-4:
            raise ValueError(
                f"variable {name!r} is declared dirichlet with value {value}, but its boundary "
                f"values in the data differ by up to {worst * normalizer.std[c]:.3g}; fix the "
                "value or drop the declaration"
            )
        out.append([c, normalized])
    return out


def _noise(run_config: dict) -> NoiseProcess:
    from sciml_diffusion.diffusion.noise import noise_from_dict

    return noise_from_dict(run_config["noise"])


def _check_stride(grid: Grid, stride: int) -> None:
    """Refuse a stride whose every-``stride``-th node grid covers another domain.

    A bounded axis of ``n`` nodes keeps both ends only if ``stride`` divides ``n - 1``; a
    periodic axis keeps its period only if ``stride`` divides ``n``.
    """
    if stride == 1:
        return
    if any(n < 2 * stride for n in grid.shape):
        raise ValueError(f"stride {stride} leaves fewer than 2 nodes on the grid {grid}")
    for axis, (name, n, periodic) in enumerate(zip(grid.axes, grid.shape, grid.periodic)):
        intervals = n if periodic else n - 1
        if intervals % stride == 0:
            continue
        kept = grid.coords[axis][::stride]
        low, high = grid.bounds[axis]
        if periodic:
            what = f"gives a period of {len(kept) * stride * grid.spacing[axis]:.4g}"
        else:
            what = f"ends the grid at {kept[-1]:.4g}"
        kind = "n" if periodic else "n - 1"
        raise ValueError(
            f"subsample stride {stride} changes the domain of axis {name!r}: keeping one in "
            f"{stride} of its {n} {'periodic' if periodic else 'bounded'} nodes {what} "
            f"instead of {high - low if periodic else high:.4g}; use strides dividing "
            f"{intervals} ({kind}), or a training resolution with {kind} divisible by "
            f"{stride} (e.g. {n + (-intervals) % stride} nodes)"
        )


def _subsample(x, mask, grid: Grid, stride: int):
    if stride == 1:
        return x, mask, grid
    _check_stride(grid, stride)
    index = (Ellipsis, *[slice(None, None, stride)] * grid.ndim)
    sub = Grid(
        [c[::stride] for c in grid.coords],
        axes=grid.axes,
        periodic=grid.periodic,
        units=grid.units,
    )
    return x[index], mask[index], sub


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))
