r"""EDM preconditioning of a denoiser (Karras et al. 2022, "Elucidating the design space of
diffusion-based generative models", Table 1):

.. math::
    D(x, \sigma) = c_\mathrm{skip}(\sigma)\, x + c_\mathrm{out}(\sigma)\,
                   F\big(c_\mathrm{in}(\sigma)\, x,\ c_\mathrm{noise}(\sigma)\big),

    c_\mathrm{skip} = \frac{\sigma_d^2}{\sigma^2 + \sigma_d^2},\quad
    c_\mathrm{out} = \frac{\sigma\,\sigma_d}{\sqrt{\sigma^2 + \sigma_d^2}},\quad
    c_\mathrm{in} = \frac{1}{\sqrt{\sigma^2 + \sigma_d^2}},\quad
    c_\mathrm{noise} = \tfrac14 \ln\sigma,

with :math:`\sigma_d` the standard deviation of the (normalised) data. The network input
and its regression target then have unit variance at every noise level when the noise has
unit variance per node (white noise, or GRF noise scaled by
:meth:`~sciml_diffusion.diffusion.noise.GRFNoise.unit_variance`).
"""

from __future__ import annotations

import torch
from torch import nn

from sciml_diffusion.diffusion.boundary import pin_boundary

__all__ = ["EDMDenoiser", "edm_coefficients"]


def edm_coefficients(sigma: torch.Tensor, sigma_data: float):
    """``(c_skip, c_out, c_in, c_noise)`` for noise levels ``sigma`` (any shape)."""
    var = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / var
    c_out = sigma * sigma_data / var.sqrt()
    c_in = var.rsqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


class EDMDenoiser(nn.Module):
    """A backbone ``F`` wrapped in EDM's preconditioning.

    Parameters
    ----------
    backbone : nn.Module
        ``F(x (B, C, *spatial), c_noise (B,), cond=..., grid=...) -> (B, C, *spatial)``,
        e.g. :class:`~sciml_diffusion.diffusion.backbone.ConditionalFNO`.
    sigma_data : float
        Standard deviation of the normalised training data.
    pinned : sequence of ``(channel, value)``, optional
        Channels whose output is set to ``value`` (normalised units) on the boundary nodes
        of the grid's bounded axes (:mod:`~sciml_diffusion.diffusion.boundary`).
    """

    def __init__(self, backbone: nn.Module, sigma_data: float = 1.0, pinned=None):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        self.backbone = backbone
        self.sigma_data = float(sigma_data)
        self.pinned = [(int(c), float(v)) for c, v in (pinned or [])]

    def forward(self, x: torch.Tensor, sigma, cond=None, grid=None) -> torch.Tensor:
        """Denoise ``x`` of shape ``(B, C, *spatial)`` at levels ``sigma`` (scalar or ``(B,)``).

        ``cond`` ``(B, C_cond, *spatial)`` are extra conditioning channels; ``grid`` the
        :class:`~sciml_diffusion.fields.Grid` of the spatial dims (positional embedding;
        without it, pinned channels treat every axis as bounded).
        """
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma.reshape(-1)
        shaped = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        c_skip, c_out, c_in, c_noise = edm_coefficients(shaped, self.sigma_data)
        out = self.backbone(c_in * x, c_noise.reshape(-1), cond=cond, grid=grid)
        denoised = c_skip * x + c_out * out.to(torch.float32)
        periodic = grid.periodic if grid is not None else (False,) * (x.ndim - 2)
        return pin_boundary(denoised, self.pinned, periodic)
