r"""Noise processes for the forward diffusion :math:`x_\sigma = x + \sigma n`.

Two processes share one interface:

- :class:`WhiteNoise`: :math:`n \sim \mathcal N(0, I)` independently at every node, the
  classic (finite-dimensional) diffusion model of Karras et al. (2022, EDM).
- :class:`GRFNoise`: :math:`n \sim \mathcal N(0, C)` with :math:`C` the covariance of a
  Gaussian random field :math:`\sigma^2(-\Delta + \tau^2)^{-\alpha}` evaluated at the grid
  nodes (:class:`~sciml_diffusion.fields.GaussianRandomField`). Because the node values of
  the field are exact on any grid, the forward process, hence the learned score, is the same
  on every grid of the domain: the model lives in function space (Lim et al. 2023,
  "Score-based diffusion models in function space"; Yao et al. 2025, FunDPS).

With covariance :math:`C` the probability-flow ODE is :math:`dx/d\sigma = (x - D(x,\sigma))/\sigma`
for either process (Tweedie: :math:`D = x + \sigma^2 C \nabla \log p_\sigma`), so the
deterministic samplers need no change; stochastic samplers and guidance draw from, or
apply, :math:`C^{1/2}`, :math:`C^{p}`.

Random draws take either one ``torch.Generator`` for the whole batch or a list of
generators, one per leading batch index ("member"): member ``b`` then only ever reads its
own generator, so its draws do not depend on the batch it is computed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sciml_diffusion.fields import GaussianRandomField, Grid

__all__ = ["NoiseProcess", "WhiteNoise", "GRFNoise", "randn", "noise_from_dict"]

Generators = torch.Generator | Sequence[torch.Generator] | None


def randn(shape, generator: Generators = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal tensor of ``shape``; with a list of generators, one per ``shape[0]``.

    Parameters
    ----------
    shape : tuple of int
        ``(B, *)``.
    generator : torch.Generator or list of B torch.Generator, optional
        One generator per member makes member ``b`` reproducible whatever ``B``.
    """
    shape = tuple(shape)
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        out = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
        return out.to(device) if device is not None else out
    if len(generator) != shape[0]:
        raise ValueError(
            f"{len(generator)} generators given for a batch of {shape[0]}; pass one per member"
        )
    draws = [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]
    out = torch.stack(draws)
    return out.to(device) if device is not None else out


class NoiseProcess:
    """Interface of a zero-mean Gaussian noise process on the nodes of a grid.

    Every method acts on tensors ``(..., *grid.shape)``: the last ``grid.ndim`` dims are
    spatial, the leading ones (batch, channels) are independent copies.
    """

    def sample(self, shape, grid: Grid, generator: Generators = None, device=None):
        """A draw ``n ~ N(0, C)`` of ``shape = (B, ..., *grid.shape)``."""
        _check_shape(shape, grid)
        white = randn(shape, generator, device=device)
        return self.apply_sqrt(white, grid)

    def apply_sqrt(self, white: torch.Tensor, grid: Grid) -> torch.Tensor:
        """``C^{1/2} w``."""
        raise NotImplementedError

    def apply_inverse_sqrt(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """``C^{-1/2} x`` (a whitening)."""
        raise NotImplementedError

    def apply_covariance(self, x: torch.Tensor, grid: Grid, power: float = 1.0) -> torch.Tensor:
        """``C^p x``; ``power=-1`` applies the precision."""
        raise NotImplementedError

    def variance(self, grid: Grid) -> float:
        """Mean variance of one node, ``tr(C) / N``."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """JSON description; inverse :func:`noise_from_dict`."""
        raise NotImplementedError


class WhiteNoise(NoiseProcess):
    """Independent standard normal noise at every node, ``C = I``."""

    def apply_sqrt(self, white, grid):
        return white

    def apply_inverse_sqrt(self, x, grid):
        return x

    def apply_covariance(self, x, grid, power=1.0):
        return x

    def variance(self, grid):
        return 1.0

    def to_dict(self):
        return {"kind": "white"}

    def __repr__(self):
        return "WhiteNoise()"


class GRFNoise(NoiseProcess):
    r"""Gaussian-random-field noise, ``C`` the node covariance of ``field``.

    Parameters
    ----------
    field : GaussianRandomField
        The covariance :math:`\sigma^2(-\Delta+\tau^2)^{-\alpha}`; use :meth:`unit_variance`
        to scale it so a node has variance one, the scale the EDM preconditioning assumes.
    """

    def __init__(self, field: GaussianRandomField):
        self.field = field

    @classmethod
    def unit_variance(cls, grid: Grid, alpha: float, tau: float, boundary=None) -> GRFNoise:
        """A GRF noise whose mean node variance on ``grid`` is one.

        ``boundary`` defaults to periodic along periodic axes and Neumann (cosine modes,
        free boundary values) along bounded ones.
        """
        if boundary is None:
            boundary = ["periodic" if p else "neumann" for p in grid.periodic]
        unscaled = GaussianRandomField(alpha=alpha, tau=tau, boundary=boundary)
        scale = GRFNoise(unscaled).variance(grid) ** -0.5
        return cls(GaussianRandomField(alpha=alpha, tau=tau, sigma=scale, boundary=boundary))

    def apply_sqrt(self, white, grid):
        return self.field.apply_sqrt(white, grid)

    def apply_inverse_sqrt(self, x, grid):
        return self.field.apply_inverse_sqrt(x, grid)

    def apply_covariance(self, x, grid, power=1.0):
        return self.field.apply_covariance(x, grid, power)

    def variance(self, grid):
        return self.field.mean_variance(grid)

    def to_dict(self):
        return {"kind": "grf", **self.field.to_dict()}

    def __repr__(self):
        return f"GRFNoise({self.field!r})"


def noise_from_dict(data: dict) -> NoiseProcess:
    """Rebuild a noise process from :meth:`NoiseProcess.to_dict`."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind == "white":
        return WhiteNoise()
    if kind == "grf":
        return GRFNoise(GaussianRandomField(**data))
    raise ValueError(f"unknown noise process {kind!r}; expected 'white' or 'grf'")


def _check_shape(shape, grid: Grid) -> None:
    if tuple(shape[-grid.ndim :]) != grid.shape or len(shape) <= grid.ndim:
        raise ValueError(
            f"noise shape {tuple(shape)} must be (batch, ..., *{grid.shape}) for grid {grid}"
        )
