r"""Denoising score matching in EDM form (Karras et al. 2022, section 5).

.. math::
    \mathcal L = \mathbb E_{\sigma, x, n}\Big[\lambda(\sigma)\,
        \big\| D(x + \sigma n, \sigma) - x \big\|^2_M\Big],\qquad
    \ln\sigma \sim \mathcal N(P_\mathrm{mean}, P_\mathrm{std}^2),\qquad
    \lambda(\sigma) = \frac{\sigma^2 + \sigma_d^2}{(\sigma\,\sigma_d)^2},

with :math:`n` drawn from the noise process (white or GRF) and :math:`\|\cdot\|_M` the mean
over the points where the mask is true (NaN in the data: no data, no loss; the data value
there is replaced by 0 before noising, so it cannot leak into the loss). The weight
:math:`\lambda` makes the effective regression target of the backbone unit-variance.
"""

from __future__ import annotations

import torch

from sciml_diffusion.diffusion.noise import NoiseProcess, randn

__all__ = ["edm_loss", "draw_noise"]


def edm_loss(
    denoiser,
    x: torch.Tensor,
    noise: NoiseProcess,
    grid,
    *,
    generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
    cond: torch.Tensor | None = None,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma: torch.Tensor | None = None,
    n: torch.Tensor | None = None,
) -> torch.Tensor:
    """EDM denoising loss of one batch (a scalar tensor).

    Parameters
    ----------
    denoiser : EDMDenoiser
        Preconditioned denoiser with attribute ``sigma_data``.
    x : torch.Tensor ``(B, C, *grid.shape)``
        Clean normalised data (0 where masked).
    noise : NoiseProcess
    grid : Grid
        Grid of ``x``'s spatial dims.
    generator : torch.Generator, optional
        Source of the noise levels and the noise.
    mask : torch.Tensor of bool, broadcastable to ``x``, optional
        True where the data are valid.
    cond : torch.Tensor ``(B, C_cond, *grid.shape)``, optional
        Conditioning channels passed to the denoiser.
    p_mean, p_std : float
        Log-normal distribution of the noise levels.
    sigma : torch.Tensor ``(B,)``, optional
        Noise levels drawn elsewhere (e.g. this process's rows of a larger batch's draw, in
        data-parallel training); with ``n``. Default: drawn from ``generator``.
    n : torch.Tensor, same shape as ``x``, optional
        Noise drawn elsewhere, with ``sigma``.
    """
    if mask is not None:  # the data's values at masked points never reach the model
        x = torch.where(mask, x, torch.zeros_like(x))
    if (sigma is None) != (n is None):
        raise ValueError("pass both sigma and n (drawn noise levels and noise), or neither")
    if sigma is None:
        sigma, n = draw_noise(x.shape, noise, grid, generator, p_mean, p_std, x.device)
    n = n.to(x.dtype)
    shaped = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    denoised = denoiser(x + shaped * n, sigma, cond=cond, grid=grid)
    sd = denoiser.sigma_data
    weight = (shaped**2 + sd**2) / (shaped * sd) ** 2
    error = weight * (denoised - x) ** 2
    if mask is None:
        return error.mean()
    mask = mask.expand_as(error).to(error.dtype)
    return (error * mask).sum() / mask.sum().clamp_min(1)


def draw_noise(shape, noise: NoiseProcess, grid, generator, p_mean=-1.2, p_std=1.2, device=None):
    """The random draws of :func:`edm_loss` for a batch of ``shape`` ``(B, C, *grid.shape)``.

    Returns
    -------
    sigma : torch.Tensor ``(B,)``
        :math:`\\exp(P_{mean} + P_{std} z)`, drawn first.
    n : torch.Tensor ``shape``
        A draw of the noise process, drawn second.
    """
    sigma = (p_mean + p_std * randn((shape[0],), generator, device=device)).exp()
    return sigma, noise.sample(shape, grid, generator, device=device)
