r"""The exact denoiser when the data are a Gaussian random field.

Let :math:`x_0 \sim \mathcal N(\mu, C_x)` with :math:`C_x = T\,\mathrm{diag}(s)\,T^\top` the
node covariance of a :class:`~sciml_diffusion.fields.GaussianRandomField` (``T`` its
orthonormal synthesis transform: Hartley along periodic axes, DST-I along Dirichlet axes),
and :math:`x_\sigma = x_0 + \sigma n` with noise covariance
:math:`C_n = T\,\mathrm{diag}(q)\,T^\top`
(``q = 1`` for white noise, the noise field's spectrum for GRF noise with the same
boundaries). Both covariances are diagonal in the same basis, so the posterior mean — the
minimiser of the denoising loss, hence the ideal network — is mode-wise Wiener filtering

.. math:: D(x, \sigma) = \mu + T\,\mathrm{diag}\!\Big(\frac{s}{s + \sigma^2 q}\Big)\,
          T^\top (x - \mu).

Plugged into a sampler it tests schedules, solvers, preconditioning and noise with no
network: a correct sampler returns samples with mean :math:`\mu` and mode variances ``s``.
"""

from __future__ import annotations

import torch

from sciml_diffusion.diffusion.noise import GRFNoise, NoiseProcess, WhiteNoise
from sciml_diffusion.fields import GaussianRandomField, Grid

__all__ = ["GaussianDenoiser"]


class GaussianDenoiser:
    """Posterior mean :math:`E[x_0 \\mid x_\\sigma]` for Gaussian-random-field data.

    Parameters
    ----------
    field : GaussianRandomField
        Distribution of the data (zero mean plus ``mean``); periodic or Dirichlet axes.
    noise : WhiteNoise or GRFNoise
        Noise process of the forward diffusion; a GRF must have the data's boundaries.
    grid : Grid
        Grid of the samples.
    mean : float or torch.Tensor broadcastable to ``(B, C, *grid.shape)``
        Data mean :math:`\\mu`.

    Call with ``x`` of shape ``(B, ..., *grid.shape)`` and ``sigma`` of shape ``(B,)``.
    """

    def __init__(self, field: GaussianRandomField, noise: NoiseProcess, grid: Grid, mean=0.0):
        boundaries = field.boundaries(grid)
        if any(b == "neumann" for b in boundaries):
            raise ValueError(
                "the exact denoiser needs an orthonormal mode basis: use periodic or "
                "Dirichlet boundaries for the data field"
            )
        if isinstance(noise, GRFNoise):
            if noise.field.boundaries(grid) != boundaries:
                raise ValueError(
                    f"noise boundaries {noise.field.boundaries(grid)} differ from the data's "
                    f"{boundaries}; the two covariances must share a mode basis"
                )
            self.noise_spectrum = noise.field.spectrum(grid, dtype=torch.float64)
        elif isinstance(noise, WhiteNoise):
            self.noise_spectrum = torch.ones(grid.shape, dtype=torch.float64)
        else:
            raise ValueError(f"no exact denoiser for noise {noise!r}")
        self.field, self.noise, self.grid, self.mean = field, noise, grid, mean
        self.spectrum = field.spectrum(grid, dtype=torch.float64)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        sigma = torch.as_tensor(sigma, dtype=dtype, device=x.device)
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        s = self.spectrum.to(x.device, dtype)
        total = s + sigma**2 * self.noise_spectrum.to(x.device, dtype)
        gain = torch.where(total > 0, s / total.clamp_min(torch.finfo(dtype).tiny), 0.0)
        centred = (x - self.mean).to(dtype)
        modes = self.field.to_modes(centred, self.grid) * gain
        return (self.field.from_modes(modes, self.grid) + self.mean).to(x.dtype)
