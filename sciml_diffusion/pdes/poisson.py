r"""Poisson: :math:`-\Delta u = f` on the unit square, u = 0 on the boundary.

Sign convention: the operator is :math:`-\Delta`, positive definite, so a positive source
gives a positive solution. The source is a Gaussian random field with covariance
:math:`\sigma^2(-\Delta + \tau^2)^{-\alpha}` (Neumann modes; default :math:`\alpha = 2`,
:math:`\tau = 3`, :math:`\sigma = 10`, pointwise standard deviation about 0.9), as the
source fields of the DiffusionPDE Poisson benchmark (Huang et al. 2024).

Discretisation: the five-point Laplacian on the node grid (spacing :math:`h = 1/(n-1)`),
second order, one sparse LU solve per sample (:mod:`sciml_diffusion.pdes.elliptic`).

Residual: :math:`r = -\Delta_h u - f` at the interior nodes, in physical units.
"""

from __future__ import annotations

import numpy as np
import torch

from sciml_diffusion.fields import GaussianRandomField, Grid
from sciml_diffusion.pdes.base import Variable, check_positive, unpack_fields
from sciml_diffusion.pdes.elliptic import DirichletProblem, apply_operator, check_bounded_grid

__all__ = ["Poisson"]


class Poisson(DirichletProblem):
    """Poisson equation ``-Laplacian u = f`` with a GRF source and zero Dirichlet data.

    Parameters
    ----------
    alpha, tau, sigma : float
        Covariance :math:`\\sigma^2(-\\Delta + \\tau^2)^{-\\alpha}` of the source.
    """

    name = "poisson"
    input_name = "f"
    variables = (
        Variable("f", "input", "source"),
        Variable("u", "solution", "potential"),
    )

    def __init__(self, alpha: float = 2.0, tau: float = 3.0, sigma: float = 10.0):
        self.alpha = float(alpha)
        self.tau = check_positive("tau", tau)
        self.sigma = check_positive("sigma", sigma)
        self.grf = GaussianRandomField(self.alpha, self.tau, self.sigma, boundary="neumann")

    def parameters(self) -> dict:
        return {"alpha": self.alpha, "tau": self.tau, "sigma": self.sigma}

    def sample_input(self, grid: Grid, generator: torch.Generator) -> np.ndarray:
        """The source ``(ny, nx)`` of one sample."""
        return self.grf.sample(grid, 1, generator=generator, dtype=torch.float64)[0].numpy()

    def coefficients(self, field: np.ndarray) -> tuple:
        return np.ones_like(field), 0.0, field

    def residual(self, fields, grid: Grid) -> torch.Tensor:
        """``-Laplacian u - f`` at the interior nodes.

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
        return apply_operator(1.0, parts["u"], hy, hx) - parts["f"][..., 1:-1, 1:-1]
