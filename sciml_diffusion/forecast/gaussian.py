r"""Gaussian-diffusion forecaster: the baseline.

The ``horizon`` future frames are one field of ``H C`` channels, modelled by the EDM
diffusion of :mod:`sciml_diffusion.diffusion` conditioned on the ``context`` frames
(``context C`` conditioning channels of the
:class:`~sciml_diffusion.diffusion.backbone.ConditionalFNO`):

.. math:: D_\theta(y + \sigma n, \sigma; x_{\mathrm{ctx}}) \approx
          \mathbb E[y \mid y + \sigma n, x_{\mathrm{ctx}}], \qquad
          y = (x_{t+1}, \dots, x_{t+H}),

trained with :func:`~sciml_diffusion.diffusion.loss.edm_loss` (land masked out) and
sampled with the package's samplers (Heun by default) from :math:`\sigma_{\max} n`. This is
the "standard" video diffusion of Ho et al. (2022) that DYffusion (Cachay et al. 2023) and
Rolling Diffusion (Ruhe et al. 2024) compare against: every future frame carries the same
noise level. Rollout past ``H`` conditions the next chunk on the last sampled frames.
"""

from __future__ import annotations

import torch

from sciml_diffusion.data_parallel import Means, item_generators
from sciml_diffusion.diffusion.backbone import ConditionalFNO
from sciml_diffusion.diffusion.loss import edm_loss
from sciml_diffusion.diffusion.noise import GRFNoise, WhiteNoise, randn
from sciml_diffusion.diffusion.precondition import EDMDenoiser
from sciml_diffusion.diffusion.samplers import SAMPLERS
from sciml_diffusion.diffusion.schedules import edm_sigmas
from sciml_diffusion.forecast.base import Forecaster, masked

__all__ = ["GaussianDiffusionForecaster", "make_noise"]


def make_noise(config, grid):
    """The noise process of a run: white, or GRF noise scaled to unit node variance."""
    if config.noise == "grf":
        alpha = config.noise_alpha if config.noise_alpha is not None else grid.ndim / 2 + 0.5
        return GRFNoise.unit_variance(grid, alpha, config.noise_tau)
    return WhiteNoise()


class GaussianDiffusionForecaster(Forecaster):
    """EDM diffusion over the whole horizon, conditioned on the context frames."""

    method = "diffusion"

    def build(self):
        c, cfg = self.channels, self.config
        self.noise = make_noise(cfg, self.grid)
        backbone = ConditionalFNO(**self.backbone_options(cfg.horizon * c, cfg.context * c))
        return {"model": EDMDenoiser(backbone, sigma_data=self.sigma_data)}

    def stage_loss(self, stage):
        cfg = self.config

        def loss(model, x, mask, generators):
            x = masked(x, mask)
            context, future = _flat(x[:, : cfg.context]), _flat(x[:, cfg.context :])
            valid = _flat(mask[:, cfg.context :])
            generators = item_generators(generators, x.shape[0])
            z = randn((x.shape[0],), generators, device=x.device)
            sigma = (cfg.p_mean + cfg.p_std * z).exp()  # each window's level, then noise
            n = self.noise.sample(future.shape, self.grid, generators, device=x.device)
            mean = edm_loss(
                model,
                future,
                self.noise,
                self.grid,
                mask=valid,
                cond=context,
                sigma=sigma,
                n=n,
            )
            return Means.of(mean, valid.expand_as(future).sum())

        return loss

    def sample_chunk(self, context, land, generators):
        cfg, model = self.config, self.network("model")
        cond = _flat(context)
        shape = (context.shape[0], cfg.horizon * self.channels, *self.grid.shape)
        sigmas = edm_sigmas(cfg.sampling_steps, cfg.sigma_min, cfg.sigma_max)
        x = sigmas[0].item() * self.noise.sample(shape, self.grid, generators).to(self.device)

        def denoiser(y, sigma):
            return model(y, sigma, cond=cond, grid=self.grid)

        options = {"noise": self.noise, "grid": self.grid, "generator": generators}
        y = SAMPLERS[cfg.sampler](denoiser, x, sigmas, **options)
        return y.reshape(context.shape[0], cfg.horizon, self.channels, *self.grid.shape)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """``(B, T, C, *spatial)`` -> ``(B, T C, *spatial)``."""
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])
