"""Settings of a forecaster (:class:`ForecastConfig`), all JSON-serialisable."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["ForecastConfig", "METHOD_NAMES", "RESUMABLE"]

#: the methods, by command-line name
METHOD_NAMES = ("diffusion", "dyffusion", "rolling")

#: samplers of :mod:`sciml_diffusion.diffusion.samplers` by name
_SAMPLERS = ("euler", "heun", "dpm2m", "stochastic", "em")

#: settings that may change when a run is resumed
#: (bf16, compile and pin_memory change only the speed)
RESUMABLE = (
    "steps",
    "interpolator_steps",
    "checkpoint_every",
    "val_every",
    "device",
    "bf16",
    "compile",
    "pin_memory",
)


@dataclass
class ForecastConfig:
    """Settings of :func:`~sciml_diffusion.forecast.fit`.

    Parameters
    ----------
    method : str
        ``"diffusion"`` (Gaussian-diffusion baseline), ``"dyffusion"`` or ``"rolling"``.
    variables : list of str, optional
        Channels, in order (default: every field variable).
    context, horizon : int
        Frames the model conditions on, and frames it forecasts in one go (for rolling
        diffusion: the window ``W``). Training windows have ``context + horizon`` frames.
    width, n_layers, n_modes : int
        Backbone (:class:`~sciml_diffusion.diffusion.backbone.ConditionalFNO`) size.
    steps, batch_size, lr, weight_decay, warmup, grad_clip, ema_decay
        Optimisation (AdamW, linear warm-up, gradient clipping, EMA of the weights).
    val_fraction, split_by, val_every, val_windows, checkpoint_every
        Held-out fraction (of the time axis or of the trajectories) used when no validation
        set is given, how often and on how many windows the EMA model's loss is computed,
        and checkpoint frequency.
    seed : int
        Seeds the weights and every training draw.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    noise, noise_alpha, noise_tau, p_mean, p_std, sampler, sampling_steps, sigma_min,
    sigma_max
        Gaussian-diffusion baseline and rolling diffusion: noise process (``white`` or
        ``grf``), log-normal training noise levels (baseline), sampler and EDM schedule.
    dropout, extra_steps, forecast_weight, lookahead_weight, interpolator_steps, refine
        DYffusion: interpolator dropout (kept on at inference: MC dropout), the number
        ``k`` of extra interpolation sub-steps in ``(0, 1)``, the loss weights
        ``lambda_1, lambda_2`` of the forecaster, the interpolator's training steps
        (default ``steps``), and refinement of intermediate frames after sampling.
    interpolator : str, optional
        DYffusion: a run directory whose trained interpolator is reused (copied into this
        run) instead of training one; referenced by path.
    mixing, rolling_steps
        Rolling diffusion: probability ``beta`` of a training draw from the
        initialisation schedule, and sampler steps per window shift.
    bf16 : bool
        Training: bfloat16 autocast around each network call on CUDA (a no-op on CPU); the
        losses, noise and optimiser stay float32
        (:class:`~sciml_diffusion.diffusion.acceleration.FastNetwork`).
    compile : bool
        Training: the trained network is called through ``torch.compile`` (eager with a
        warning if compilation fails); checkpoints hold the plain module's weights.
    pin_memory : bool
        Windows read from lazy data go through page-locked memory to a CUDA device
        (``non_blocking``); no effect on CPU or for data held in memory.
    """

    method: str = "diffusion"
    variables: list[str] | None = None
    context: int = 1
    horizon: int = 4
    width: int = 32
    n_layers: int = 4
    n_modes: int = 12
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    val_fraction: float = 0.1
    split_by: str = "time"
    val_every: int = 250
    val_windows: int = 64
    checkpoint_every: int = 250
    seed: int = 0
    device: str = "auto"
    noise: str = "white"
    noise_alpha: float | None = None
    noise_tau: float = 20.0
    p_mean: float = -1.2
    p_std: float = 1.2
    sampler: str = "heun"
    sampling_steps: int = 16
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    dropout: float = 0.1
    extra_steps: int = 0
    forecast_weight: float = 0.5
    lookahead_weight: float = 0.5
    interpolator_steps: int | None = None
    refine: bool = False
    interpolator: str | None = None
    mixing: float = 0.1
    rolling_steps: int = 4
    bf16: bool = False
    compile: bool = False
    pin_memory: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> ForecastConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown forecast settings {unknown}; known: {sorted(known)}")
        return cls(**data)

    def validate(self) -> ForecastConfig:
        if self.method not in METHOD_NAMES:
            raise ValueError(
                f"unknown method {self.method!r}; choose one of {', '.join(METHOD_NAMES)}"
            )
        positive = ("context", "horizon", "width", "n_layers", "n_modes", "steps", "batch_size")
        for name in positive + ("sampling_steps", "rolling_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.method == "dyffusion" and self.horizon < 2:
            raise ValueError("DYffusion interpolates inside the horizon: it needs horizon >= 2")
        if self.extra_steps < 0:
            raise ValueError(f"extra_steps must be >= 0, got {self.extra_steps}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.mixing <= 1:
            raise ValueError(f"mixing must be in [0, 1], got {self.mixing}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.interpolator is not None and self.method != "dyffusion":
            raise ValueError("interpolator= reuses a DYffusion interpolator; use method dyffusion")
        samplers = ("euler", "heun") if self.method == "rolling" else _SAMPLERS
        if self.sampler not in samplers:
            raise ValueError(
                f"sampler {self.sampler!r} is not available for {self.method}; choose one of "
                f"{', '.join(samplers)}"
            )
        if self.split_by not in ("time", "sample"):
            raise ValueError(f"split_by must be 'time' or 'sample', got {self.split_by!r}")
        if self.noise not in ("white", "grf"):
            raise ValueError(f"noise must be 'white' or 'grf', got {self.noise!r}")
        return self

    @property
    def window(self) -> int:
        """Frames per training window: ``context + horizon``."""
        return int(self.context) + int(self.horizon)
