"""The interface every forecaster shares: ``fit`` on trajectories, ``forecast`` an ensemble.

A method subclasses :class:`Forecaster` and writes three things:

- ``build()``: its networks, one per training stage (``{"model": ...}`` or, for DYffusion,
  ``{"interpolator": ..., "forecaster": ...}``), trained in that order;
- ``stage_loss(stage)``: the loss ``(model, x, mask, generators)`` of a batch of normalised
  windows ``x (B, context + horizon, C, *spatial)``, averaged over ``mask``: a scalar, or
  its masked means with their numbers of points
  (:class:`~sciml_diffusion.data_parallel.Means`); window ``b`` draws every random number
  from ``generators[b]`` (a single generator seeds one per window);
- ``sample_chunk(context, land, generators)`` or ``sample_frames(...)``: normalised
  frames ``(B, n, C, *spatial)`` following ``context (B, context, C, *spatial)``.

:meth:`Forecaster.forecast` does the rest for all of them: reads the initial state from a
data set (any coordinate order, NaN land), checks its grid, batches ``members`` copies
per initial state, rolls out autoregressively past the horizon (each chunk's last frames
become the next context), and returns an ``xarray.Dataset`` on the input's own
coordinates with ``member`` and ``lead_time`` dims and ``valid_time``/``init_time``
coordinates.

A run directory holds ``config.json`` (format, method, settings, variables, grid, time
step, ``sigma_data``), ``normalizer.json`` and one folder per stage with
``checkpoint.pt`` (state dicts, read with ``weights_only=True``) and ``log.jsonl``.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from sciml_diffusion import distributed
from sciml_diffusion.diffusion.acceleration import FastNetwork
from sciml_diffusion.diffusion.prior import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    NORMALIZER_FILE,
    check_resumable,
    load_checkpoint,
    member_generators,
    read_run_config,
)
from sciml_diffusion.diffusion.training_state import save_state
from sciml_diffusion.fields import FieldDataset, Grid, Normalizer
from sciml_diffusion.fields.io import atomic_path
from sciml_diffusion.forecast.config import RESUMABLE, ForecastConfig
from sciml_diffusion.forecast.layout import ascending, restore, time_step, valid_times
from sciml_diffusion.forecast.training import train_stage
from sciml_diffusion.forecast.windows import (
    Windows,
    check_time_data,
    fit_statistics,
    split_time,
    time_tensor,
)

__all__ = ["Forecaster", "FORMAT", "read_forecast_config", "as_field_dataset", "masked"]

#: identifies a forecaster run directory's config.json
FORMAT = "sciml_diffusion.forecast/1"


class Forecaster:
    """A probabilistic forecaster of fields ``(C, *spatial)`` on one grid.

    Parameters
    ----------
    config : ForecastConfig
    normalizer : Normalizer
        Per-variable statistics; ``normalizer.variables`` is the channel order.
    grid : Grid
        The training grid (ascending coordinates).
    step : dict
        Time step of the training data (:func:`~sciml_diffusion.forecast.layout.time_step`).
    sigma_data : float
        Standard deviation of the normalised training fields.
    """

    method = ""
    stages: tuple[str, ...] = ("model",)

    def __init__(self, config: ForecastConfig, normalizer: Normalizer, grid: Grid, step, sigma):
        self.config, self.normalizer, self.grid = config, normalizer, grid
        self.step, self.sigma_data = dict(step), float(sigma)
        self.device = torch.device("cpu")
        self.bf16 = self.compiled = False
        self._fast: dict[str, FastNetwork] = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.networks: dict[str, nn.Module] = self.build()

    # ------------------------------------------------------------------ per method
    def build(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def stage_loss(self, stage: str):
        raise NotImplementedError

    def sample_chunk(self, context: torch.Tensor, land: torch.Tensor, generators):
        """``horizon`` normalised frames ``(B, horizon, C, *spatial)`` after ``context``."""
        raise NotImplementedError

    def sample_frames(self, context, frames: int, land, generators, progress=False):
        """``frames`` normalised frames after ``context``: chunks rolled out autoregressively.

        Parameters
        ----------
        context : torch.Tensor ``(B, context, C, *spatial)``
        frames : int
        land : torch.Tensor of bool ``(B, C, *spatial)``
            True where data exist; elsewhere frames are set to 0 before they become context.
        generators : list of B torch.Generator
        """
        out, produced = [], 0
        bar = tqdm(total=frames, desc=f"{self.method} forecast", disable=not progress)
        while produced < frames:
            chunk = torch.where(land[:, None], self.sample_chunk(context, land, generators), 0.0)
            out.append(chunk)
            produced += chunk.shape[1]
            bar.update(min(chunk.shape[1], frames - bar.n))
            context = torch.cat([context, chunk], dim=1)[:, -self.config.context :]
        bar.close()
        return torch.cat(out, dim=1)[:, :frames]

    # ------------------------------------------------------------------ fast paths
    def accelerate(self, bf16: bool = False, compile: bool = False) -> Forecaster:
        """Forecast with bf16 autocast (CUDA only) and/or ``torch.compile``; returns ``self``.

        Both off by default; the networks and their weights are unchanged
        (:class:`~sciml_diffusion.diffusion.acceleration.FastNetwork`).
        """
        self.bf16, self.compiled = bool(bf16), bool(compile)
        self._fast = {}
        return self

    def network(self, stage: str):
        """What sampling calls for ``stage``: its network through the chosen fast paths."""
        module = self.networks[stage]
        fast = self._fast.get(stage)
        if fast is None or fast.module is not module or fast.device != self.device:
            fast = FastNetwork(module, self.device, self.bf16, self.compiled)
            self._fast[stage] = fast
        return fast

    # ------------------------------------------------------------------ properties
    @property
    def variables(self) -> tuple[str, ...]:
        """Channel order."""
        return tuple(self.normalizer.variables)

    def backbone_options(self, channels: int, cond_channels: int) -> dict:
        """Keyword arguments of a :class:`ConditionalFNO` of the configured size on the grid."""
        cfg = self.config
        return dict(
            channels=channels,
            n_modes=[cfg.n_modes] * self.grid.ndim,
            width=cfg.width,
            n_layers=cfg.n_layers,
            cond_channels=cond_channels,
            domain=self.grid.bounds,
        )

    @property
    def channels(self) -> int:
        return len(self.variables)

    def to(self, device) -> Forecaster:
        self.device = torch.device(device)
        for net in self.networks.values():
            net.to(self.device)
        return self

    # ------------------------------------------------------------------ training
    @classmethod
    def create(cls, train: FieldDataset, config: ForecastConfig) -> Forecaster:
        """An untrained forecaster for ``train``'s variables, grid and time step."""
        variables = config.variables or list(train.variables)
        normalizer, sigma = fit_statistics(train, variables)  # one streaming pass if lazy
        return cls(config, normalizer, train.grid, time_step(train.xarray["time"].values), sigma)

    def train(self, train, val, out: Path | None, resume: bool, progress: bool) -> Forecaster:
        """Train every stage in order on the windows of ``train`` (validated on ``val``)."""
        config = self.config
        device = _device(config.device)
        if distributed.context().is_distributed:  # under torchrun: this rank's device
            device = distributed.context().device
        self.to(device)
        pin = bool(config.pin_memory)
        windows = Windows.of(train, self.variables, self.normalizer, config.window, pin)
        val_windows = (
            Windows.of(val, self.variables, self.normalizer, config.window, pin)
            if val is not None
            else None
        )
        for stage in self.stages:
            steps = self.stage_steps(stage)
            directory = out / stage if out is not None else None
            source = self.pretrained(stage)
            if source is not None:
                self.networks[stage] = self.reuse_stage(stage, source, directory, device)
                continue
            with self._trained_fast(stage, device):  # earlier stages the loss calls
                ema = train_stage(
                    stage,
                    self.networks[stage],
                    self.stage_loss(stage),
                    windows,
                    val_windows,
                    config,
                    steps,
                    directory,
                    device,
                    resume=resume,
                    progress=progress,
                )
            self.networks[stage] = ema
        return self

    @contextmanager
    def _trained_fast(self, stage: str, device):
        """While ``stage`` trains, the networks of the stages before it (e.g. DYffusion's
        frozen interpolator, called by the forecaster's loss) go through the training fast
        paths (``config.bf16``, ``config.compile``) too."""
        config = self.config
        before = self.stages[: self.stages.index(stage)]
        frozen = {s: self.networks[s] for s in before} if config.bf16 or config.compile else {}
        for name, net in frozen.items():
            self.networks[name] = FastNetwork(net, device, config.bf16, config.compile)
        try:
            yield
        finally:
            self.networks.update(frozen)

    def stage_steps(self, stage: str) -> int:
        return int(self.config.steps)

    def pretrained(self, stage: str) -> Path | None:
        """A run directory whose trained ``stage`` is reused instead of training it."""
        return None

    def reuse_stage(self, stage: str, source: Path, directory: Path | None, device):
        """The EMA weights of ``source/stage``, copied into ``directory`` (if any)."""
        run = read_forecast_config(source)
        if run["grid"] != self.grid.to_dict() or run["variables"] != list(self.variables):
            raise ValueError(
                f"the {stage} in {source} was trained on other variables or another grid; "
                "reuse one trained on the same data"
            )
        state = load_checkpoint(source / stage, device)
        net = self.networks[stage].to(device)
        try:
            net.load_state_dict(state["ema"])
        except RuntimeError as error:
            raise ValueError(
                f"the {stage} in {source} does not fit this configuration (width, modes, "
                f"context, ...): {str(error).splitlines()[0]}"
            ) from error
        if directory is not None and distributed.is_main():
            save_state(directory, {"step": state["step"], "ema": net.state_dict()})
        return net.requires_grad_(False).eval()

    # ------------------------------------------------------------------ forecasting
    @torch.no_grad()
    def forecast(
        self,
        initial,
        lead_times,
        members: int = 1,
        generator=None,
        rollout: bool = True,
        progress: bool = False,
        batch_size: int | None = None,
        sharded: bool = False,
    ) -> xr.Dataset | None:
        """An ensemble forecast from the last ``context`` frames of ``initial``.

        Parameters
        ----------
        initial : FieldDataset or xarray.Dataset
            With a ``time`` dim of at least ``context`` steps (optionally a ``sample`` dim
            of several initial states), on the training grid; any coordinate order. Only
            its last ``context`` time steps are read (a lazy file stays on disk otherwise).
        lead_times : int or sequence of int
            Lead times in time steps of the data (``1`` is the frame after the last one).
        members : int
            Ensemble size.
        generator : int or torch.Generator, optional
            Seed of the ensemble; member ``i`` of initial state ``s`` draws from its own
            generator (seed, ``s``, ``i``), so it is the same in any batch and on any rank.
        rollout : bool
            Allow lead times beyond the horizon (autoregressive rollout).
        batch_size : int, optional
            Members per batch, for every initial state at once (default all members).
        sharded : bool
            Split the members across the ranks of a ``torchrun`` process group
            (:func:`~sciml_diffusion.distributed.member_block`); rank 0 gathers them and
            returns the whole ensemble, the other ranks ``None``.

        Returns
        -------
        xarray.Dataset or None
            Variables ``(sample?, member, lead_time, *spatial)`` in physical units, NaN where
            the initial state had no data; coordinates ``lead_time``, ``valid_time``,
            ``init_time`` and the input's spatial coordinates; attrs ``seed``.
        """
        leads = self.check_leads(lead_times, rollout)
        if int(members) < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        ds, flipped = ascending(_as_xarray(initial))
        data = FieldDataset(ds, variables=self.variables)
        self.check_initial(data)
        last = data.isel(time=slice(data.xarray.sizes["time"] - self.config.context, None))
        context, land = self.initial_tensors(last)  # reads only the last context frames
        seed = _seed(generator)
        block = distributed.member_block(int(members), sharded)
        frames = torch.empty(len(block), *context.shape[:1], len(leads), *context.shape[2:])
        step = batch_size or max(len(block), 1)
        for first in range(block.start, block.stop, step):
            batch = range(first, min(first + step, block.stop))
            rows = slice(first - block.start, batch.stop - block.start)
            frames[rows] = self._forecast_members(context, land, batch, leads, seed, progress)
        frames, _ = distributed.gather_members(frames, block)
        if frames is None:  # not rank 0: its members went to rank 0
            return None
        out = self.to_xarray(frames.transpose(0, 1), land, data, leads)
        out.attrs["seed"] = seed
        return restore(out, flipped)

    def _forecast_members(self, context, land, members: range, leads, seed, progress):
        """Members ``members`` of every initial state, physical ``(M, S, L, C, *spatial)``."""
        n, m = context.shape[0], len(members)
        context = context.repeat_interleave(m, 0).to(self.device)
        land = land.repeat_interleave(m, 0).to(self.device)
        generators = _generators(seed, n, members)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            frames = self.sample_frames(context, int(leads.max()), land, generators, progress)
        frames = self.normalizer.denormalize(frames[:, leads - 1].float().cpu())
        return frames.reshape(n, m, *frames.shape[1:]).transpose(0, 1)

    def check_leads(self, lead_times, rollout: bool) -> np.ndarray:
        leads = np.unique(np.atleast_1d(np.asarray(lead_times, dtype=np.int64)))
        if leads.size == 0 or leads.min() < 1:
            raise ValueError(f"lead times must be integers >= 1, got {lead_times}")
        if not rollout and leads.max() > self.config.horizon:
            raise ValueError(
                f"lead time {int(leads.max())} is beyond the horizon {self.config.horizon} this "
                "model reaches in one go; allow rollout or ask for lead times <= "
                f"{self.config.horizon}"
            )
        return leads

    def check_initial(self, data: FieldDataset) -> None:
        check_time_data(data, self.config.context, "initial")
        grid = data.grid
        if grid != self.grid:
            raise ValueError(
                f"the initial state's grid {grid} differs from the training grid {self.grid}; "
                "refusing to forecast: resample it onto the training grid first "
                "(sciml_diffusion.fields.resample)"
            )

    def initial_tensors(self, data: FieldDataset):
        """Context ``(S, context, C, *spatial)`` (normalised, 0 on land) and land mask."""
        x, mask = time_tensor(data, self.variables, self.normalizer)
        return x[:, -self.config.context :], mask[:, -1]

    def to_xarray(self, frames, land, data: FieldDataset, leads) -> xr.Dataset:
        """``frames (S, M, L, C, *spatial)`` as the output data set."""
        ds = data.xarray
        spatial = data.spatial_dims
        has_sample = "sample" in ds.dims
        values = np.where(land[:, None, None].numpy(), frames.numpy(), np.nan)
        dims = ("sample", "member", "lead_time", *spatial)
        out = {}
        for c, name in enumerate(self.variables):
            arr = values[:, :, :, c] if has_sample else values[0, :, :, c]
            out[name] = (dims if has_sample else dims[1:], arr.astype(np.float32), ds[name].attrs)
        coords = {d: ds[d] for d in spatial if d in ds.coords}
        coords["member"] = np.arange(frames.shape[1])
        coords["lead_time"] = ("lead_time", leads, {"long_name": "lead time", "units": "steps"})
        init = ds["time"].values[-1] if "time" in ds.coords else None
        step = time_step(ds["time"].values) if ds.sizes["time"] > 1 else self.step
        if init is not None:
            coords["init_time"] = ((), init)
            coords["valid_time"] = ("lead_time", valid_times(init, leads, step))
        if has_sample and "sample" in ds.coords:
            coords["sample"] = ds["sample"].values
        attrs = {
            "source": f"sciml_diffusion {self.method} forecast",
            "method": self.method,
            "time_step": float(step["value"]),
            "time_step_kind": step["kind"],
        }
        result = xr.Dataset(out, coords=coords, attrs=attrs)
        if "time" in ds.coords:
            for key in ("calendar", "units"):
                if key in ds["time"].encoding:
                    result["valid_time"].encoding[key] = ds["time"].encoding[key]
        return result

    # ------------------------------------------------------------------ files
    def run_config(self) -> dict:
        return {
            "format": FORMAT,
            "method": self.method,
            "variables": list(self.variables),
            "grid": self.grid.to_dict(),
            "time_step": self.step,
            "sigma_data": self.sigma_data,
            "config": asdict(self.config),
        }

    def write_run(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.normalizer.save(out / NORMALIZER_FILE)
        with atomic_path(out / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps(self.run_config(), indent=2))

    @classmethod
    def from_run(cls, run: dict, normalizer: Normalizer) -> Forecaster:
        config = ForecastConfig.from_dict(run["config"]).validate()
        grid = Grid.from_dict(run["grid"])
        return cls(config, normalizer, grid, run["time_step"], run["sigma_data"])

    def load_weights(self, path: Path, device=None) -> Forecaster:
        for stage in self.stages:
            state = load_checkpoint(path / stage, device)
            try:
                self.networks[stage].load_state_dict(state["ema"])
            except RuntimeError as error:
                raise ValueError(
                    f"the weights in {path / stage} do not fit its config.json: "
                    f"{str(error).splitlines()[0]}"
                ) from error
            self.networks[stage].eval()
        return self.to(device or "cpu")

    def __repr__(self) -> str:
        c = self.config
        return (
            f"{type(self).__name__}(variables={list(self.variables)}, context={c.context}, "
            f"horizon={c.horizon}, grid={self.grid})"
        )


def masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with 0 wherever ``mask`` is False: no value under the mask reaches a network."""
    return torch.where(mask, x, torch.zeros_like(x))


def read_forecast_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` of a forecaster run directory, validated."""
    return read_run_config(path, FORMAT, "forecaster")


def check_resume(out: Path, config: ForecastConfig, resume: bool) -> dict | None:
    """The previous run config when resuming; refuses to overwrite an existing run."""
    if not resume:
        if (out / CONFIG_FILE).exists() or any(out.glob(f"*/{CHECKPOINT_FILE}")):
            raise FileExistsError(
                f"{out} already holds a forecaster run; pass resume to continue it or choose "
                "a new directory (nothing was overwritten)"
            )
        return None
    run = read_forecast_config(out)
    old, new = run["config"], asdict(config)
    check_resumable(out, old, new, RESUMABLE)
    return run


def as_field_dataset(data, variables=None) -> FieldDataset:
    """``data`` (FieldDataset or xarray.Dataset) with ascending spatial coordinates."""
    ds, _ = ascending(_as_xarray(data))
    return FieldDataset(ds, variables=variables)


def prepare_training(train, val, config: ForecastConfig):
    """Training and validation data (split off ``train`` when ``val`` is None), checked."""
    train = as_field_dataset(train)
    check_time_data(train, config.window, "training")
    if val is None and config.val_fraction > 0:
        train, val = split_time(train, config.val_fraction, config.split_by)
        if val is not None and val.xarray.sizes["time"] < config.window:
            raise ValueError(
                f"the validation split has {val.xarray.sizes['time']} time steps, fewer than "
                f"the {config.window} of one window; lower val_fraction, split by 'sample', "
                "or pass validation data"
            )
        check_time_data(train, config.window, "training (after the validation split)")
    elif val is not None:
        val = as_field_dataset(val)
        check_time_data(val, config.window, "validation")
        if val.grid != train.grid:
            raise ValueError(f"validation grid {val.grid} differs from training grid {train.grid}")
    return train, val


def _as_xarray(data) -> xr.Dataset:
    if isinstance(data, FieldDataset):
        return data.xarray
    if isinstance(data, xr.Dataset):
        return data
    raise ValueError(f"expected a FieldDataset or xarray.Dataset, got {type(data).__name__}")


def _generators(seed: int, initial: int, members: range) -> list[torch.Generator]:
    """One generator per (initial state, member), rows ``s * len(members) + i``.

    Member ``i`` of initial state ``s`` is seeded from (seed, ``s``, ``i``) only: the same
    whatever the ensemble size, the batch and the rank it is computed on.
    """
    out = []
    for s in range(initial):
        for g in member_generators(seed, len(members), start=members.start):
            out.append(g.manual_seed(g.initial_seed() + 10_007 * s))
    return out


def _seed(generator) -> int:
    if generator is None:
        return 0
    if isinstance(generator, torch.Generator):
        return int(torch.randint(2**31 - 1, (1,), generator=generator))
    return int(generator)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
