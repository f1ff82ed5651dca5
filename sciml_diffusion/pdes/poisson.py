r"""Poisson: :math:`-\Delta u = f` on the unit square, u = 0 on the boundary.

Two data conventions (``convention=``):

- ``"ours"`` (default): the operator is :math:`-\Delta`, positive definite, so a positive
  source gives a positive solution. The source is a Gaussian random field with covariance
  :math:`\sigma^2(-\Delta + \tau^2)^{-\alpha}` sampled at the nodes (Neumann modes with
  their aliases, constant mode kept; default :math:`\alpha = 2`, :math:`\tau = 3`,
  :math:`\sigma = 10`: pointwise std of ``f`` 1.42, of ``u`` 0.047 at 128²).
- ``"diffusionpde"``: the DiffusionPDE / FunDPS benchmark (Huang et al. 2024): the
  equation is :math:`\Delta u = f`, the source their ``GRF.m`` field
  (:func:`~sciml_diffusion.pdes.diffusionpde.cosine_grf`, zero mean,
  :math:`\sigma = \tau^{\alpha-1} = 3`: std of ``f`` 0.292, of ``u`` 0.0042 at 128²),
  synthesised at cell centres and used as node values, as their generator does.

Discretisation: the five-point Laplacian on the node grid (spacing :math:`h = 1/(n-1)`),
second order, one sparse LU solve per sample (:mod:`sciml_diffusion.pdes.elliptic`).

Residual: :math:`r = -\Delta_h u - f` (``"diffusionpde"``: :math:`\Delta_h u - f`) at the
interior nodes, in physical units.
"""

from __future__ import annotations

import numpy as np
import torch

from sciml_diffusion.fields import GaussianRandomField, Grid
from sciml_diffusion.pdes.base import Variable, check_positive, unpack_fields
from sciml_diffusion.pdes.diffusionpde import check_convention, cosine_grf
from sciml_diffusion.pdes.elliptic import DirichletProblem, apply_operator, check_bounded_grid

__all__ = ["Poisson"]


class Poisson(DirichletProblem):
    """Poisson equation ``-Laplacian u = f`` with a GRF source and zero Dirichlet data.

    Parameters
    ----------
    alpha, tau, sigma : float
        Covariance :math:`\\sigma^2(-\\Delta + \\tau^2)^{-\\alpha}` of the source;
        ``sigma`` defaults to 10 (``"ours"``) or ``tau**(alpha - 1)`` (``"diffusionpde"``).
    convention : str
        ``"ours"`` or ``"diffusionpde"`` (sign ``Laplacian u = f`` and their source).
    """

    name = "poisson"
    input_name = "f"
    variables = (
        Variable("f", "input", "source"),
        Variable("u", "solution", "potential"),
    )

    def __init__(
        self,
        alpha: float = 2.0,
        tau: float = 3.0,
        sigma: float | None = None,
        convention: str = "ours",
    ):
        self.convention = check_convention(convention)
        self.alpha = float(alpha)
        self.tau = check_positive("tau", tau)
        if sigma is None:
            sigma = 10.0 if self.convention == "ours" else self.tau ** (self.alpha - 1)
        self.sigma = check_positive("sigma", sigma)
        self.grf = GaussianRandomField(self.alpha, self.tau, self.sigma, boundary="neumann")
        self.sign = 1.0 if self.convention == "ours" else -1.0  # -Laplacian u = sign * f

    def parameters(self) -> dict:
        return {
            "alpha": self.alpha,
            "tau": self.tau,
            "sigma": self.sigma,
            "convention": self.convention,
        }

    def sample_input(self, grid: Grid, generator: torch.Generator) -> np.ndarray:
        """The source ``(ny, nx)`` of one sample."""
        if self.convention == "diffusionpde":
            return cosine_grf(grid.shape, self.alpha, self.tau, self.sigma, generator)
        return self.grf.sample(grid, 1, generator=generator, dtype=torch.float64)[0].numpy()

    def coefficients(self, field: np.ndarray) -> tuple:
        return np.ones_like(field), 0.0, self.sign * field

    def residual(self, fields, grid: Grid) -> torch.Tensor:
        """``-Laplacian u - f`` (``"diffusionpde"``: ``Laplacian u - f``) at the interior nodes.

        Parameters
        ----------
        fields : torch.Tensor (B, 2, ny, nx) with channels ``(f, u)``, or a mapping.
        grid : Grid
            The 2-D non-periodic grid of the fields.

        Returns
        -------
        torch.Tensor (B, ny-2, nx-2)
        """
        hy, hx = check_bounded_grid(grid, self.name)
        parts = unpack_fields(fields, ("f", "u"), grid.ndim)
        operator = self.sign * apply_operator(1.0, parts["u"], hy, hx)
        return operator - parts["f"][..., 1:-1, 1:-1]
