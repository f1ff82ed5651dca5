r"""Noise-level (sigma) schedules for the samplers.

The EDM schedule of Karras et al. (2022, eq. 5) spaces :math:`\sigma^{1/\rho}` uniformly,

.. math:: \sigma_i = \Big(\sigma_{\max}^{1/\rho} + \tfrac{i}{N-1}
          (\sigma_{\min}^{1/\rho} - \sigma_{\max}^{1/\rho})\Big)^{\rho},
          \quad i = 0, \dots, N-1, \qquad \sigma_N = 0,

which concentrates steps at small noise levels for :math:`\rho = 7`. Any user-supplied,
strictly decreasing array of positive levels is accepted as well; a final 0 is appended.
"""

from __future__ import annotations

import torch

__all__ = ["edm_sigmas", "as_sigmas"]


def edm_sigmas(
    steps: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    device=None,
) -> torch.Tensor:
    """The EDM rho schedule: ``steps`` decreasing levels then 0, shape ``(steps + 1,)`` float64."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_min, inv_max = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    if steps == 1:
        sigmas = torch.tensor([sigma_max], dtype=torch.float64)
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(device)


def as_sigmas(values, device=None) -> torch.Tensor:
    """Validate a user schedule: positive, strictly decreasing; a trailing 0 is appended.

    Returns
    -------
    torch.Tensor of shape ``(N + 1,)``, float64, ending in 0.
    """
    sigmas = torch.as_tensor(values, dtype=torch.float64).reshape(-1).cpu()
    if sigmas.numel() and sigmas[-1] == 0:
        sigmas = sigmas[:-1]
    if sigmas.numel() < 1:
        raise ValueError("a sigma schedule needs at least one positive noise level")
    if not torch.all(torch.isfinite(sigmas)) or torch.any(sigmas <= 0):
        raise ValueError(f"noise levels must be finite and positive, got {sigmas.tolist()}")
    if torch.any(sigmas[1:] >= sigmas[:-1]):
        raise ValueError(f"noise levels must be strictly decreasing, got {sigmas.tolist()}")
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(device)
