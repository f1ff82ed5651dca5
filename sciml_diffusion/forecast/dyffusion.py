r"""DYffusion (Cachay, Zhao, Joren & Yu 2023, "DYffusion: a dynamics-informed diffusion model
for spatiotemporal forecasting", NeurIPS).

The diffusion "time" is physical time inside the horizon :math:`h`. Two networks:

- a stochastic interpolator :math:`\mathcal I_\phi(x_t, x_{t+h}, i) \approx x_{t+i}`,
  :math:`0 < i < h`, trained first by regression on the true intermediate frames, with
  dropout that stays on at inference (MC dropout, its only source of randomness; each
  ensemble member, and in training each window, draws its masks from its own generator);
- a forecaster :math:`F_\theta(x_{t+i_n}, i_n) \approx x_{t+h}`, trained second with the
  interpolator frozen, on interpolated inputs:

.. math::
    \mathcal L = \lambda_1 \big\|F_\theta(\tilde x_{n}, i_n) - x_{t+h}\big\|^2
      + \lambda_2 \big\|F_\theta\big(\mathcal I_\phi(x_t, F_\theta(\tilde x_n, i_n),
      i_{n+1}), i_{n+1}\big) - x_{t+h}\big\|^2,
    \qquad \tilde x_n = \mathcal I_\phi(x_t, x_{t+h}, i_n),\ \tilde x_0 = x_t,

with :math:`n` uniform on :math:`\{0, \dots, N-1\}` (the second, look-ahead term only for
:math:`n \le N - 2`; gradients pass through the frozen interpolator into :math:`F`).

Schedule with :math:`k` extra sub-steps (``extra_steps``; the paper's "before t1 only"
schedule): :math:`N = h + k` steps, :math:`i_0 = 0`, :math:`i_n = n / (k + 1)` for
:math:`1 \le n \le k`, and :math:`i_n = n - k` for :math:`n > k`, ending at
:math:`i_{N-1} = h - 1`; :func:`interpolation_times`.

Cold sampling (the paper's Algorithm 2, after Bansal et al. 2022), with :math:`i_N = h` and
:math:`\mathcal I(x_t, \cdot, h)` the identity on its second argument:

.. math::
    \hat x_{t+h} = F_\theta(x_{t+i_n}, i_n),\qquad
    x_{t+i_{n+1}} = \mathcal I_\phi(x_t, \hat x_{t+h}, i_{n+1})
      - \mathcal I_\phi(x_t, \hat x_{t+h}, i_n) + x_{t+i_n},

for :math:`n = 0, \dots, N-1`; the frames at integer :math:`i_n` are the forecast, and with
``refine`` the intermediate ones are replaced by
:math:`\mathcal I_\phi(x_t, \hat x_{t+h}, i)` using the last :math:`\hat x_{t+h}`
(:func:`cold_sample`). Here both networks also see all ``context`` frames (the paper uses
one), :math:`x_t` being the last of them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sciml_diffusion.data_parallel import Means, item_generators, per_item
from sciml_diffusion.diffusion.backbone import ConditionalFNO
from sciml_diffusion.forecast.base import Forecaster, masked
from sciml_diffusion.forecast.gaussian import _flat

__all__ = [
    "DYffusion",
    "interpolation_times",
    "cold_sample",
    "MCDropoutFNO",
    "member_dropout",
    "masked_mse",
]


def interpolation_times(horizon: int, extra_steps: int = 0) -> list[float]:
    """The schedule :math:`i_0, \\dots, i_{N-1}` of DYffusion with ``k`` extra sub-steps.

    ``interpolation_times(5, 1) == [0, 0.5, 1, 2, 3, 4]``.
    """
    if horizon < 2:
        raise ValueError(f"DYffusion needs horizon >= 2, got {horizon}")
    k = int(extra_steps)
    if k < 0:
        raise ValueError(f"extra_steps must be >= 0, got {extra_steps}")
    return [0.0] + [n / (k + 1) for n in range(1, k + 1)] + [float(n) for n in range(1, horizon)]


def cold_sample(
    interpolate: Callable[[torch.Tensor, float], torch.Tensor],
    forecast: Callable[[torch.Tensor, float], torch.Tensor],
    x_t: torch.Tensor,
    times: list[float],
    horizon: int,
    refine: bool = False,
) -> torch.Tensor:
    """DYffusion's cold-sampling loop; returns frames at ``i = 1, ..., horizon``.

    Parameters
    ----------
    interpolate : callable ``(x_end (B, *), i) -> (B, *)``
        :math:`\\mathcal I(x_t, x_{\\mathrm{end}}, i)` with ``x_t`` bound.
    forecast : callable ``(x_s (B, *), i) -> (B, *)``
        :math:`F(x_s, i)`, an estimate of :math:`x_{t+h}`.
    x_t : torch.Tensor ``(B, *)``
        The initial frame.
    times : list of float
        :func:`interpolation_times`.

    Returns
    -------
    torch.Tensor ``(B, horizon, *)``
    """
    frames: dict[int, torch.Tensor] = {}
    x_s = x_t
    x_h = x_t
    for n, i_n in enumerate(times):
        i_next = times[n + 1] if n + 1 < len(times) else float(horizon)
        x_h = forecast(x_s, i_n)
        target = interpolate(x_h, i_next) if i_next < horizon else x_h
        current = interpolate(x_h, i_n) if n > 0 else x_s
        x_s = x_s - current + target
        if float(i_next).is_integer():
            frames[int(i_next)] = x_s
    if refine:
        for i in range(1, horizon):
            frames[i] = interpolate(x_h, float(i))
    return torch.stack([frames[i] for i in range(1, horizon + 1)], dim=1)


class _DropoutBlock(nn.Module):
    """A residual block whose increment goes through dropout, always (MC dropout).

    With ``generators`` set (one per batch row, see :func:`member_dropout`) row ``b``'s
    mask is drawn from ``generators[b]``, so a member's (or a training window's) masks do
    not depend on its batch; otherwise from torch's global generator.
    """

    def __init__(self, block: nn.Module, p: float):
        super().__init__()
        self.block, self.p = block, float(p)
        self.generators = None

    def forward(self, h, emb):
        out = self.block(h, emb)
        if self.generators is None or self.p == 0:
            return h + F.dropout(out - h, self.p, training=self.p > 0)
        if len(self.generators) != h.shape[0]:
            raise ValueError(f"{len(self.generators)} generators for a batch of {h.shape[0]}")
        draws = [torch.rand(h.shape[1:], generator=g, device=g.device) for g in self.generators]
        keep = (torch.stack(draws).to(h.device) >= self.p).to(h.dtype)
        return h + (out - h) * keep / (1 - self.p)


@contextmanager
def member_dropout(net: nn.Module, generators):
    """Within the block, ``net``'s MC-dropout masks come from one generator per batch row."""
    blocks = [m for m in net.modules() if isinstance(m, _DropoutBlock)]
    for block in blocks:
        block.generators = generators
    try:
        yield net
    finally:
        for block in blocks:
            block.generators = None


class MCDropoutFNO(nn.Module):
    """A :class:`ConditionalFNO` whose blocks' increments go through dropout, in training and
    at inference alike (Gal & Ghahramani 2016, "Dropout as a Bayesian approximation").

    Same constructor and forward as :class:`ConditionalFNO`, plus ``dropout``.
    """

    def __init__(self, dropout: float = 0.1, **kwargs):
        super().__init__()
        self.net = ConditionalFNO(**kwargs)
        self.net.blocks = nn.ModuleList(_DropoutBlock(b, dropout) for b in self.net.blocks)

    def forward(self, x, c_noise, cond=None, grid=None):
        return self.net(x, c_noise, cond=cond, grid=grid)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    """Mean squared error over the points where ``mask`` is True."""
    weight = mask.expand_as(prediction).to(prediction.dtype)
    error = torch.where(mask, prediction - target, torch.zeros_like(prediction))
    return error.square().mul(weight).sum() / weight.sum().clamp_min(1)


def _masked_mean(prediction, target, mask) -> Means:
    """:func:`masked_mse` with its number of points, for data-parallel weighting."""
    return Means.of(masked_mse(prediction, target, mask), mask.expand_as(prediction).sum())


class DYffusion(Forecaster):
    """Interpolator then forecaster, sampled by cold sampling (module docstring)."""

    method = "dyffusion"
    stages = ("interpolator", "forecaster")

    def build(self):
        c, cfg = self.channels, self.config
        common = self.backbone_options(c, cfg.context * c)
        self.times = interpolation_times(cfg.horizon, cfg.extra_steps)
        return {
            "interpolator": MCDropoutFNO(dropout=cfg.dropout, **common),
            "forecaster": ConditionalFNO(**common),
        }

    def pretrained(self, stage):
        if stage == "interpolator" and self.config.interpolator is not None:
            return Path(self.config.interpolator)
        return None

    def stage_steps(self, stage):
        if stage == "interpolator" and self.config.interpolator_steps is not None:
            return int(self.config.interpolator_steps)
        return int(self.config.steps)

    # ------------------------------------------------------------------ networks
    def _time(self, i, x: torch.Tensor) -> torch.Tensor:
        i = torch.as_tensor(i, dtype=x.dtype, device=x.device).reshape(-1)
        return (i / self.config.horizon).expand(x.shape[0])

    def interpolate(self, net, context, x_end, i, land):
        """:math:`\\mathcal I(x_t, x_{t+h}, i)`: ``(B, C, *spatial)``, 0 where ``~land``."""
        out = net(x_end, self._time(i, x_end), cond=_flat(context), grid=self.grid)
        return torch.where(land, out, torch.zeros_like(out))

    def predict_end(self, net, context, x_s, i):
        """:math:`F(x_{t+i}, i)`: an estimate of :math:`x_{t+h}`, ``(B, C, *spatial)``."""
        return net(x_s, self._time(i, x_s), cond=_flat(context), grid=self.grid)

    # ------------------------------------------------------------------ losses
    def stage_loss(self, stage):
        return self._interpolator_loss if stage == "interpolator" else self._forecaster_loss

    def _interpolator_loss(self, net, x, mask, generators):
        """Regression on a true intermediate frame at a random ``i`` per window; each
        window's ``i`` and dropout masks come from its own generator."""
        cfg, x = self.config, masked(x, mask)
        context, end, land = x[:, : cfg.context], x[:, -1], mask[:, cfg.context - 1]
        generators = item_generators(generators, x.shape[0])
        i = per_item(generators, lambda g: torch.randint(1, cfg.horizon, (), generator=g))
        rows = torch.arange(x.shape[0])
        target = x[rows, cfg.context - 1 + i]
        with member_dropout(net, generators):
            pred = self.interpolate(net, context, end, i.to(x), land)
        return _masked_mean(pred, target, mask[rows, cfg.context - 1 + i])

    def _forecaster_loss(self, net, x, mask, generators):
        """Forecast and look-ahead terms (module docstring) at a random step ``n`` per
        window; each window's ``n`` and interpolator dropout masks come from its own
        generator."""
        cfg, x = self.config, masked(x, mask)
        interpolator = self.networks["interpolator"]
        context, x_t, end = x[:, : cfg.context], x[:, cfg.context - 1], x[:, -1]
        land, end_mask = mask[:, cfg.context - 1], mask[:, -1]
        n_steps = len(self.times)
        generators = item_generators(generators, x.shape[0])
        n = per_item(generators, lambda g: torch.randint(n_steps, (), generator=g))
        times = torch.tensor(self.times, dtype=x.dtype, device=x.device)
        i_n = times[n.to(x.device)]
        with torch.no_grad(), member_dropout(interpolator, generators):
            interp = self.interpolate(interpolator, context, end, i_n.clamp_min(1e-6), land)
        x_s = torch.where((n == 0).to(x.device).reshape(-1, *[1] * (x.ndim - 2)), x_t, interp)
        pred = self.predict_end(net, context, x_s, i_n)
        loss = cfg.forecast_weight * _masked_mean(pred, end, end_mask)
        if cfg.lookahead_weight == 0:
            return loss
        ahead = n <= n_steps - 2
        if not ahead.any():  # an empty term: same terms on every rank (Means.share)
            return loss + cfg.lookahead_weight * Means.of(pred.sum() * 0, 0)
        sel = ahead.to(x.device)
        i_next = times[(n[ahead] + 1).to(x.device)]
        chosen = [g for g, a in zip(generators, ahead.tolist()) if a]
        with member_dropout(interpolator, chosen):
            x_next = self.interpolate(interpolator, context[sel], pred[sel], i_next, land[sel])
        pred2 = self.predict_end(net, context[sel], x_next, i_next)
        return loss + cfg.lookahead_weight * _masked_mean(pred2, end[sel], end_mask[sel])

    # ------------------------------------------------------------------ sampling
    def sample_chunk(self, context, land, generators):
        interpolator, forecaster = self.network("interpolator"), self.network("forecaster")

        def interpolate(x_end, i):
            return self.interpolate(interpolator, context, x_end, i, land)

        def forecast(x_s, i):
            return self.predict_end(forecaster, context, x_s, i)

        with member_dropout(self.networks["interpolator"], generators):
            return cold_sample(
                interpolate,
                forecast,
                context[:, -1],
                self.times,
                self.config.horizon,
                refine=self.config.refine,
            )
