r"""A Gaussian-random-field prior with its exact denoiser, usable wherever a :class:`Prior` is.

Each channel is an independent :class:`~sciml_diffusion.fields.GaussianRandomField`
:math:`\mathcal N(\mu_c, C_x)`; its ideal denoiser is the mode-wise Wiener filter of
:class:`~sciml_diffusion.diffusion.exact.GaussianDenoiser`. Nothing is trained, and every
posterior under linear Gaussian observations is known in closed form
(:func:`sciml_diffusion.inverse.gaussian_posterior`), so a :class:`GaussianPrior` is the
reference against which samplers and guidance methods are calibrated — by the tests of
this package, and by any user who wants to check a method on their own sensor layout.

Example
-------
>>> from sciml_diffusion.fields import GaussianRandomField, Grid
>>> grid = Grid.regular((16, 16), periodic=True)
>>> noise = GRFNoise.unit_variance(grid, alpha=1.5, tau=10.0)
>>> prior = GaussianPrior(GaussianRandomField(2.0, 3.0, sigma=20.0), noise, grid)
>>> prior.sample_tensor(2, steps=8, generator=0).shape
torch.Size([2, 1, 16, 16])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sciml_diffusion.diffusion.exact import GaussianDenoiser
from sciml_diffusion.diffusion.noise import NoiseProcess
from sciml_diffusion.diffusion.prior import Prior
from sciml_diffusion.fields import GaussianRandomField, Grid, Normalizer

__all__ = ["GaussianPrior", "ExactDenoiser"]


class ExactDenoiser(nn.Module):
    """``D(x, sigma)`` of a Gaussian random field on any grid of its domain (no weights).

    Called like :class:`~sciml_diffusion.diffusion.precondition.EDMDenoiser`:
    ``(x (B, C, *grid.shape), sigma (B,) or scalar, cond=None, grid=Grid)``. Works on the
    zero-mean normalised fields of a :class:`GaussianPrior`.
    """

    def __init__(self, field: GaussianRandomField, noise: NoiseProcess, grid: Grid):
        super().__init__()
        self.field, self.noise, self.grid = field, noise, grid
        self.sigma_data = 1.0  # only reported; the exact denoiser needs no preconditioning
        self._by_grid: dict = {}
        self.register_buffer("_device_marker", torch.zeros(()), persistent=False)

    def exact(self, grid: Grid) -> GaussianDenoiser:
        """The :class:`GaussianDenoiser` on ``grid`` (built once per grid)."""
        if grid not in self._by_grid:
            self._by_grid[grid] = GaussianDenoiser(self.field, self.noise, grid)
        return self._by_grid[grid]

    def forward(self, x: torch.Tensor, sigma, cond=None, grid: Grid | None = None):
        if cond is not None:
            raise ValueError("a GaussianPrior is unconditional; pass cond=None")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma.reshape(-1)
        return self.exact(grid if grid is not None else self.grid)(x, sigma)


class GaussianPrior(Prior):
    r"""Independent Gaussian random fields per channel, with the exact denoiser.

    Has the :class:`Prior` interface (``variables``, ``grid``, ``noise``, ``normalizer``,
    ``denoise``, ``sample_tensor``, ``sample``), so :func:`sciml_diffusion.inverse.reconstruct`
    and the CLI-free API accept it like a trained prior.

    Parameters
    ----------
    field : GaussianRandomField
        Covariance :math:`C_x` of every channel (periodic or Dirichlet axes: the exact
        denoiser needs an orthonormal mode basis).
    noise : NoiseProcess
        Noise process of the diffusion (white, or GRF with the field's boundaries).
    grid : Grid
        The default grid; any grid of the same domain works.
    variables : sequence of str
        Channel names.
    mean : float or sequence of float
        Mean :math:`\mu_c` of each channel (physical units; the normaliser removes it).
    """

    def __init__(
        self,
        field: GaussianRandomField,
        noise: NoiseProcess,
        grid: Grid,
        variables: Sequence[str] = ("u",),
        mean: float | Sequence[float] = 0.0,
    ):
        variables = [variables] if isinstance(variables, str) else list(variables)
        means = [float(mean)] * len(variables) if _is_number(mean) else list(mean)
        if len(means) != len(variables):
            raise ValueError(f"{len(means)} means given for {len(variables)} variables")
        normalizer = Normalizer(variables, means, [1.0] * len(variables), spatial_ndim=grid.ndim)
        denoiser = ExactDenoiser(field, noise, grid)
        denoiser.exact(grid)  # fail now on Neumann axes or mismatched noise
        config = {"kind": "gaussian", "field": field.to_dict(), "noise": noise.to_dict()}
        super().__init__(denoiser, noise, normalizer, grid, config)
        self.field = field

    @property
    def device(self) -> torch.device:
        return self.denoiser._device_marker.device

    def __repr__(self) -> str:
        return (
            f"GaussianPrior(variables={list(self.variables)}, field={self.field!r}, "
            f"noise={self.noise!r}, grid={self.grid})"
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
