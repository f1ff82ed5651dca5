"""The :class:`Prior` bundle: a trained function-space diffusion prior and all it needs.

A run directory holds (DESIGN.md, "every checkpoint carries what is needed to use it")

- ``config.json``: model and training configuration, the variable order, the noise
  process, ``sigma_data`` and the training grid;
- ``normalizer.json``: the per-variable statistics the model was trained on;
- ``layout.nc``: the training data's coordinates, attributes, encodings and land mask
  (:meth:`~sciml_diffusion.fields.FieldDataset.layout`), so that samples on the training
  grid look like the training file (land NaN, same coordinate order and dtypes);
- ``checkpoint.pt``: state dicts only (model, EMA, optimiser, step, RNG state), read with
  ``torch.load(weights_only=True)``; sampling uses the EMA weights.

Sampling solves the probability-flow ODE (or reverse SDE) from ``x_T = sigma_max * n``,
``n`` drawn from the training noise process on the requested grid. Any-resolution
sampling means: the same weights and the same noise process on another grid of the *same
domain* (more or fewer nodes); see ``docs/priors.md`` for what that buys and its limits.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from sciml_diffusion import distributed
from sciml_diffusion.diffusion.acceleration import CompiledDenoiser, bf16_autocast
from sciml_diffusion.diffusion.backbone import ConditionalFNO
from sciml_diffusion.diffusion.noise import NoiseProcess, noise_from_dict
from sciml_diffusion.diffusion.precondition import EDMDenoiser
from sciml_diffusion.diffusion.samplers import SAMPLERS
from sciml_diffusion.diffusion.schedules import as_sigmas, edm_sigmas
from sciml_diffusion.fields import FieldDataset, Grid, Normalizer

__all__ = [
    "Prior",
    "build_denoiser",
    "member_generators",
    "FORMAT",
    "read_run_config",
    "LAYOUT_FILE",
]

#: identifies a prior run directory's config.json
FORMAT = "sciml_diffusion.prior/1"
CONFIG_FILE, NORMALIZER_FILE, CHECKPOINT_FILE = "config.json", "normalizer.json", "checkpoint.pt"
LAYOUT_FILE = "layout.nc"


def build_denoiser(run_config: dict) -> EDMDenoiser:
    """The (untrained) preconditioned denoiser described by a run config's ``model`` entry."""
    model = run_config["model"]
    backbone = ConditionalFNO(
        channels=model["channels"],
        n_modes=model["n_modes"],
        width=model["width"],
        n_layers=model["n_layers"],
        cond_channels=model.get("cond_channels", 0),
        domain=model.get("domain"),
    )
    return EDMDenoiser(backbone, sigma_data=run_config["sigma_data"], pinned=model.get("pinned"))


def member_generators(seed: int, n: int, device="cpu", start: int = 0) -> list[torch.Generator]:
    """Generators of members ``start .. start + n - 1`` (member ``i``: ``seed * 1000003 + i``).

    Member ``i`` of seed ``s`` is the same in any batch and on any rank: a block of members
    (a batch, a rank's :func:`~sciml_diffusion.distributed.shard`) gets its generators by
    passing its first index as ``start``.
    """
    first = int(seed) * 1_000_003 + int(start)
    return [torch.Generator(device).manual_seed(first + i) for i in range(n)]


def read_run_config(path: str | os.PathLike, format: str = FORMAT, kind: str = "prior") -> dict:
    """The ``config.json`` of a ``kind`` run directory, checked to be of ``format``."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no {kind} run directory at {path}")
    file = path / CONFIG_FILE
    if not file.exists():
        raise ValueError(f"{path} is not a {kind} run directory: it has no {CONFIG_FILE}")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{file} is not valid JSON ({error}); the run directory is damaged"
        ) from error
    if not isinstance(config, dict) or config.get("format") != format:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{file} is not a sciml_diffusion {kind} config (format {found!r})")
    return config


def check_resumable(out, old: dict, new: dict, resumable) -> None:
    """Refuse to resume the run in ``out`` when a setting outside ``resumable`` changed.

    ``old`` and ``new`` are the stored and the requested settings (dicts of one config).
    """
    changed = sorted(k for k in new if k not in resumable and old.get(k) != new[k])
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed)
        raise ValueError(
            f"cannot resume {out} with a different configuration ({diffs}); only "
            f"{', '.join(resumable)} may change"
        )


def load_checkpoint(path: str | os.PathLike, device=None) -> dict:
    """Read ``checkpoint.pt`` with ``weights_only=True``; a clear error if it is damaged."""
    file = Path(path) / CHECKPOINT_FILE
    if not file.exists():
        raise FileNotFoundError(f"no {CHECKPOINT_FILE} in {path}; train first or fix the path")
    try:
        state = torch.load(file, map_location=device or "cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or foreign files
        raise ValueError(
            f"{file} is not a readable prior checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})"
        ) from error
    if not isinstance(state, dict) or not {"ema", "step"} <= set(state):
        raise ValueError(f"{file} is not a sciml_diffusion prior checkpoint (no EMA weights)")
    return state


class Prior:
    """A trained diffusion prior over normalised fields ``(B, C, *grid.shape)``.

    Parameters
    ----------
    denoiser : EDMDenoiser
        Preconditioned denoiser (the EMA weights).
    noise : NoiseProcess
        The training noise process.
    normalizer : Normalizer
        Per-variable statistics; ``normalizer.variables`` is the channel order.
    grid : Grid
        The training grid.
    config : dict, optional
        The run configuration (``config.json``).
    layout : FieldDataset, optional
        The training data's layout (:meth:`FieldDataset.layout`): samples keep its
        coordinates, attributes, encodings and land mask.
    bf16 : bool
        Default of :meth:`sample_tensor`'s ``bf16``: bfloat16 autocast around each network
        call on CUDA (a no-op on CPU; see :mod:`~sciml_diffusion.diffusion.acceleration`).
    compile : bool
        Call the denoiser through ``torch.compile`` when sampling (:meth:`compile`).
    """

    def __init__(
        self,
        denoiser: EDMDenoiser,
        noise: NoiseProcess,
        normalizer: Normalizer,
        grid: Grid,
        config: dict | None = None,
        layout: FieldDataset | None = None,
        bf16: bool = False,
        compile: bool = False,
    ):
        self.denoiser, self.noise, self.normalizer, self.grid = denoiser, noise, normalizer, grid
        self.config = config or {}
        self.layout = layout
        self.bf16 = bool(bf16)
        self._network = None
        if compile:
            self.compile()

    def compile(self, backend: str | None = None, **options) -> Prior:
        """Sample through ``torch.compile(self.denoiser)`` from now on; returns ``self``.

        Compilation happens at the first denoiser call of each new shape (seconds to
        minutes); if it fails the denoiser runs eagerly, with a warning
        (:class:`~sciml_diffusion.diffusion.acceleration.CompiledDenoiser`). ``self.denoiser``
        stays the plain module. ``backend`` and ``options`` go to ``torch.compile``.
        """
        self._network = CompiledDenoiser(self.denoiser, backend=backend, **options)
        return self

    @property
    def network(self):
        """What the samplers call: the compiled denoiser after :meth:`compile`, else it."""
        if self._network is not None and self._network.module is self.denoiser:
            return self._network
        return self.denoiser

    @property
    def variables(self) -> tuple[str, ...]:
        """Channel order of every tensor the prior reads or writes."""
        return tuple(self.normalizer.variables)

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @classmethod
    def load(cls, path: str | os.PathLike, device=None, bf16=False, compile=False) -> Prior:
        """Load a run directory written by :func:`~sciml_diffusion.diffusion.train.train_prior`.

        ``bf16`` and ``compile`` as in the class (both off by default).
        """
        config = read_run_config(path)
        normalizer = Normalizer.load(Path(path) / NORMALIZER_FILE)
        state = load_checkpoint(path, device)
        denoiser = build_denoiser(config)
        try:
            denoiser.load_state_dict(state["ema"])
        except RuntimeError as error:
            raise ValueError(
                f"the weights in {path} do not fit its config.json (was the checkpoint copied "
                f"from another run?): {str(error).splitlines()[0]}"
            ) from error
        denoiser.to(device or "cpu").eval()
        noise = noise_from_dict(config["noise"])
        layout = _read_layout(Path(path) / LAYOUT_FILE)
        grid = Grid.from_dict(config["grid"])
        return cls(
            denoiser, noise, normalizer, grid, config, layout=layout, bf16=bf16, compile=compile
        )

    # ------------------------------------------------------------------ denoising
    def check_grid(self, grid: Grid | None) -> Grid:
        """``grid`` (default: the training grid), checked to cover the training domain."""
        if grid is None:
            return self.grid
        if grid.ndim != self.grid.ndim:
            raise ValueError(
                f"the prior was trained on a {self.grid.ndim}-D grid {self.grid}; "
                f"got a {grid.ndim}-D grid"
            )
        if not grid.same_domain(self.grid):
            raise ValueError(
                f"grid {grid} does not cover the training domain {self.grid}; sample on a grid "
                "of the same domain (e.g. training_grid.with_shape(...)) and crop afterwards"
            )
        return grid

    def denoise(self, x: torch.Tensor, sigma, grid: Grid | None = None, cond=None):
        """``D(x, sigma)`` on normalised fields ``x (B, C, *grid.shape)``, ``sigma`` ``(B,)``."""
        grid = self.check_grid(grid if grid is not None else _grid_for(x, self.grid))
        if x.shape[1] != len(self.variables):
            raise ValueError(
                f"x has {x.shape[1]} channels; this prior expects {len(self.variables)} "
                f"({', '.join(self.variables)})"
            )
        return self.denoiser(x, sigma, cond=cond, grid=grid)

    # ------------------------------------------------------------------ sampling
    def sample_tensor(
        self,
        n: int,
        grid: Grid | None = None,
        sampler: str = "heun",
        steps: int = 32,
        generator=None,
        sigmas=None,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        guidance=None,
        cond=None,
        progress: bool = False,
        bf16: bool | None = None,
        **sampler_options,
    ) -> torch.Tensor:
        """``n`` normalised samples ``(n, C, *grid.shape)``.

        Parameters
        ----------
        n : int
            Number of samples (ensemble members).
        grid : Grid, optional
            Sampling grid on the training domain (default: the training grid).
        sampler : str
            One of ``euler, heun, dpm2m, stochastic, em``.
        steps : int
            Number of noise levels of the EDM schedule (ignored with ``sigmas``).
        generator : int, torch.Generator or list of n generators, optional
            An int seeds one generator per member (:func:`member_generators`).
        sigmas : array, optional
            Explicit decreasing schedule.
        guidance : callable, optional
            Hook applied after each step (see :mod:`~sciml_diffusion.diffusion.samplers`).
        cond : torch.Tensor ``(n, C_cond, *grid.shape)``, optional
            Conditioning channels for a conditional backbone.
        bf16 : bool, optional
            bfloat16 autocast around each network call on CUDA (default ``self.bf16``,
            off); the sampler's state and the guidance stay float32. A no-op on CPU.
        """
        grid = self.check_grid(grid)
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if n < 1:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        if isinstance(generator, int):
            generator = member_generators(generator, n)
        levels = (
            as_sigmas(sigmas) if sigmas is not None else edm_sigmas(steps, sigma_min, sigma_max)
        )
        shape = (n, len(self.variables), *grid.shape)
        x = levels[0].item() * self.noise.sample(shape, grid, generator)
        x = x.to(self.device)

        network = self.network
        autocast = self.bf16 if bf16 is None else bool(bf16)

        def denoiser(x, sigma):
            with bf16_autocast(x.device, autocast):
                return network(x, sigma, cond=cond, grid=grid)

        options = {"noise": self.noise, "grid": grid, "generator": generator}
        options.update(sampler_options)
        with torch.set_grad_enabled(guidance is not None and torch.is_grad_enabled()):
            return SAMPLERS[sampler](
                denoiser, x, levels, guidance=guidance, progress=progress, **options
            )

    def sample(
        self,
        n: int,
        grid: Grid | None = None,
        *,
        batch_size: int | None = None,
        sharded: bool = False,
        **options,
    ) -> FieldDataset | None:
        """``n`` samples in physical units as a :class:`FieldDataset` on ``grid``.

        Takes the options of :meth:`sample_tensor`, and

        Parameters
        ----------
        batch_size : int, optional
            Members per sampler call (default all ``n`` at once).
        sharded : bool
            Split the ``n`` members across the ranks of a ``torchrun`` process group
            (:func:`~sciml_diffusion.distributed.member_block`) and gather them on rank 0,
            which returns the whole set; the other ranks return ``None``.

        With an int seed (``generator=``), sample ``i`` is the same whatever ``batch_size``
        and the number of ranks.
        """
        grid = self.check_grid(grid)
        if n < 1:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        block = distributed.member_block(n, sharded)
        x = self._sample_block(block, grid, batch_size, options)
        x, _ = distributed.gather_members(x, block)
        if x is None:
            return None
        fields = self.normalizer.denormalize(x.detach().double().cpu())
        if not torch.isfinite(fields).all():
            warnings.warn(
                "some samples are not finite (NaN or inf); the prior may be undertrained or "
                "the data's values extreme",
                RuntimeWarning,
                stacklevel=2,
            )
        attrs = {
            "source": "sciml_diffusion prior sample",
            "sampler": options.get("sampler", "heun"),
        }
        if isinstance(options.get("generator"), int):
            attrs["seed"] = options["generator"]
        like = self.layout if self.layout is not None and _fits(self.layout, grid) else None
        return FieldDataset.from_tensor(
            fields, variables=list(self.variables), grid=grid, like=like, attrs=attrs
        )

    def _sample_block(self, block: range, grid: Grid, batch_size, options) -> torch.Tensor:
        """Normalised members ``block`` ``(len(block), C, *grid.shape)``, in batches."""
        options = dict(options)
        seed = options.pop("generator", None)
        single = batch_size is None or batch_size >= len(block)
        if not isinstance(seed, int) and not (single and block.start == 0):
            raise ValueError(
                "sampling in batches or on several ranks needs an int seed (generator=) so "
                "that member i is the same in any batch"
            )
        batch_size = batch_size or max(len(block), 1)
        chunks = [torch.empty(0, len(self.variables), *grid.shape, device=self.device)]
        for first in range(block.start, block.stop, batch_size):
            count = min(batch_size, block.stop - first)
            generator = seed
            if isinstance(seed, int):
                generator = member_generators(seed, count, start=first)
            chunks.append(
                self.sample_tensor(count, grid=grid, generator=generator, **options).detach()
            )
        return torch.cat(chunks)

    def __repr__(self) -> str:
        return (
            f"Prior(variables={list(self.variables)}, noise={self.noise!r}, grid={self.grid}, "
            f"sigma_data={self.denoiser.sigma_data:.4g})"
        )


def _read_layout(path: Path) -> FieldDataset | None:
    """The run's ``layout.nc`` (runs trained before it existed have none)."""
    if not path.exists():
        return None
    try:
        return FieldDataset.open(path)
    except (ValueError, OSError) as error:
        raise ValueError(f"{path} is damaged ({error}); the run folder is incomplete") from error


def _fits(layout: FieldDataset, grid: Grid) -> bool:
    """Whether the layout describes ``grid``'s domain (same axes and bounds)."""
    return layout.grid.axes == grid.axes and layout.grid.ndim == grid.ndim


def _grid_for(x: torch.Tensor, grid: Grid) -> Grid:
    shape = tuple(x.shape[2:])
    if len(shape) != grid.ndim:
        raise ValueError(
            f"x of shape {tuple(x.shape)} is not (batch, channels, <{grid.ndim} spatial dims>)"
        )
    return grid if shape == grid.shape else grid.with_shape(shape)
