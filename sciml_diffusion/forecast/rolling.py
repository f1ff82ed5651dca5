r"""Rolling diffusion (Ruhe, Heek, Salimans & Hoogeboom 2024, "Rolling diffusion models", ICML).

A window of :math:`W` future frames is denoised together, each frame :math:`k = 0..W-1`
at its own *local* diffusion time, increasing into the future. For a global time
:math:`t \in [0, 1]`:

.. math::
    t_k^{\mathrm{roll}}(t) = \frac{k + t}{W}, \qquad
    t_k^{\mathrm{init}}(t) = \mathrm{clip}\Big(\frac{k}{W} + t,\ 0,\ 1\Big).

Sampling starts from pure noise and runs the *initialisation* schedule from :math:`t = 1`
(every frame at local time 1) to :math:`t = 0` (local times :math:`k/W`); then, repeatedly,
the first frame is at local time 0 and is emitted, the window shifts by one frame, a fresh
noise frame enters at local time 1, and the *rolling* schedule runs :math:`t: 1 \to 0`
again. One frame per shift, as far into the future as wanted, conditioned on the
``context`` clean frames before the window. Training draws :math:`t \sim U(0, 1)` and the
initialisation schedule with probability :math:`\beta` (``mixing``), the rolling one
otherwise (the paper's mixture of the two stages).

Local times map to EDM noise levels by the :math:`\rho` schedule of Karras et al. (2022),
:math:`\sigma(\tau) = (\sigma_{\min}^{1/\rho} + \tau(\sigma_{\max}^{1/\rho} -
\sigma_{\min}^{1/\rho}))^\rho` (:func:`local_sigmas`), so every frame gets EDM's
preconditioning at its own :math:`\sigma_k` and the loss weight
:math:`\lambda(\sigma_k) = (\sigma_k^2 + \sigma_d^2)/(\sigma_k\sigma_d)^2`. The backbone
sees the window as :math:`W C` channels, the context frames and one map of
:math:`c_\mathrm{noise}(\sigma_k)` per frame as conditioning channels. Each sampler step is
Heun's (or Euler's) step of the probability-flow ODE frame by frame,
:math:`dx_k/d\sigma_k = (x_k - D_k)/\sigma_k`.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from sciml_diffusion.data_parallel import Means, item_generators, per_item
from sciml_diffusion.diffusion.backbone import ConditionalFNO
from sciml_diffusion.diffusion.precondition import edm_coefficients
from sciml_diffusion.forecast.base import Forecaster, masked
from sciml_diffusion.forecast.gaussian import _flat, make_noise

__all__ = [
    "RollingDiffusion",
    "RollingDenoiser",
    "rolling_local_times",
    "init_local_times",
    "local_sigmas",
]


def rolling_local_times(t, window: int) -> torch.Tensor:
    """:math:`t_k = (k + t) / W`, shape ``(*t.shape, W)``."""
    t = torch.as_tensor(t, dtype=torch.float64)
    k = torch.arange(window, dtype=torch.float64)
    return (k + t[..., None]) / window


def init_local_times(t, window: int) -> torch.Tensor:
    """:math:`t_k = \\mathrm{clip}(k / W + t, 0, 1)`, shape ``(*t.shape, W)``."""
    t = torch.as_tensor(t, dtype=torch.float64)
    k = torch.arange(window, dtype=torch.float64)
    return (k / window + t[..., None]).clamp(0.0, 1.0)


def local_sigmas(tau, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
    """EDM noise level of local time ``tau`` in ``[0, 1]`` (``sigma_min`` at 0)."""
    tau = torch.as_tensor(tau, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + tau * (hi - lo)) ** rho


class RollingDenoiser(nn.Module):
    """Frame-wise EDM-preconditioned denoiser of a window ``(B, W, C, *spatial)``.

    Parameters
    ----------
    backbone : ConditionalFNO
        With ``channels = W C`` and ``cond_channels = context C + W``.
    window, channels : int
    sigma_data : float
    """

    def __init__(self, backbone: nn.Module, window: int, channels: int, sigma_data: float):
        super().__init__()
        self.backbone, self.window, self.channels = backbone, int(window), int(channels)
        self.sigma_data = float(sigma_data)

    def forward(self, y, sigma, context, grid=None):
        """``D(y, sigma)`` of ``y (B, W, C, *spatial)`` at levels ``sigma (B, W)``."""
        shaped = sigma.to(y.dtype).reshape(*sigma.shape, *[1] * (y.ndim - 2))
        c_skip, c_out, c_in, c_noise = edm_coefficients(shaped, self.sigma_data)
        maps = c_noise[:, :, 0].expand(-1, -1, *y.shape[3:])
        cond = torch.cat([_flat(context), maps], dim=1)
        film = c_noise.reshape(y.shape[0], -1).mean(1)
        out = self.backbone(_flat(c_in * y), film, cond=cond, grid=grid)
        return c_skip * y + c_out * out.reshape(y.shape)


class RollingDiffusion(Forecaster):
    """Sliding-window diffusion with noise increasing into the future (module docstring)."""

    method = "rolling"

    def build(self):
        c, cfg = self.channels, self.config
        self.noise = make_noise(cfg, self.grid)
        options = self.backbone_options(cfg.horizon * c, cfg.context * c + cfg.horizon)
        backbone = ConditionalFNO(**options)
        return {"model": RollingDenoiser(backbone, cfg.horizon, c, self.sigma_data)}

    def sigmas(self, tau: torch.Tensor) -> torch.Tensor:
        return local_sigmas(tau, self.config.sigma_min, self.config.sigma_max)

    # ------------------------------------------------------------------ training
    def stage_loss(self, stage):
        return self._loss

    def _loss(self, model, x, mask, generators):
        """Frame-wise EDM loss at a random global time and schedule per window (each
        window's time, schedule and noise from its own generator), a masked mean."""
        cfg, x = self.config, masked(x, mask)
        context, y = x[:, : cfg.context], x[:, cfg.context :]
        valid = mask[:, cfg.context :]
        generators = item_generators(generators, x.shape[0])
        t = per_item(generators, lambda g: torch.rand((), generator=g, dtype=torch.float64))
        init = per_item(generators, lambda g: torch.rand((), generator=g)) < cfg.mixing
        tau = torch.where(
            init[:, None], init_local_times(t, cfg.horizon), rolling_local_times(t, cfg.horizon)
        )
        sigma = self.sigmas(tau).to(x.device, x.dtype)
        n = self._member_noise(y.shape, generators).to(x.dtype)
        shaped = sigma.reshape(*sigma.shape, *[1] * (y.ndim - 2))
        denoised = model(y + shaped * n, sigma, context, grid=self.grid)
        sd = self.sigma_data
        weight = (shaped**2 + sd**2) / (shaped * sd) ** 2
        error = torch.where(valid, weight * (denoised - y) ** 2, torch.zeros_like(y))
        count = valid.expand_as(y).sum()
        return Means.of(error.sum() / count.clamp_min(1), count)

    # ------------------------------------------------------------------ sampling
    def sample_frames(self, context, frames, land, generators, progress=False):
        cfg = self.config
        w, steps = cfg.horizon, cfg.rolling_steps
        shape = (context.shape[0], w, self.channels, *self.grid.shape)
        y = self.sigmas(torch.tensor(1.0)).item() * self._member_noise(shape, generators)
        times = torch.linspace(1, 0, w * steps + 1, dtype=torch.float64)
        y = self._run(y, context, [init_local_times(t, w) for t in times])
        out = []
        rolling = [rolling_local_times(t, w) for t in torch.linspace(1, 0, steps + 1)]
        bar = tqdm(total=frames, desc="rolling forecast", disable=not progress)
        while True:
            frame = torch.where(land, y[:, 0], torch.zeros_like(y[:, 0]))
            out.append(frame)
            bar.update(1)
            if len(out) == frames:
                bar.close()
                return torch.stack(out, dim=1)
            context = torch.cat([context, frame[:, None]], dim=1)[:, -cfg.context :]
            fresh = self.sigmas(torch.tensor(1.0)).item() * self._member_noise(
                (shape[0], 1, *shape[2:]), generators
            )
            y = self._run(torch.cat([y[:, 1:], fresh], dim=1), context, rolling)

    def _member_noise(self, shape, generators):
        """Noise ``shape`` ``(B, W, C, *spatial)``, row ``b`` from ``generators[b]``."""
        flat = (shape[0], shape[1] * shape[2], *shape[3:])
        draw = self.noise.sample(flat, self.grid, generators, device=self.device)
        return draw.reshape(shape)

    def _run(self, y, context, local_times):
        """Integrate the probability-flow ODE frame-wise along ``local_times`` (list of (W,))."""
        model = self.network("model")
        levels = [self.sigmas(tau).to(y.device, y.dtype) for tau in local_times]
        for s, s_next in zip(levels[:-1], levels[1:]):
            y = self._step(model, y, context, s, s_next)
        return y

    def _step(self, model, y, context, s, s_next):
        b = y.shape[0]
        shape = (1, -1, *[1] * (y.ndim - 2))
        d = (y - model(y, s.expand(b, -1), context, grid=self.grid)) / s.reshape(shape)
        delta = (s_next - s).reshape(shape)
        y_next = y + delta * d
        if self.config.sampler == "euler":
            return y_next
        d2 = (y_next - model(y_next, s_next.expand(b, -1), context, grid=self.grid)) / (
            s_next.reshape(shape)
        )
        return y + delta * 0.5 * (d + d2)
