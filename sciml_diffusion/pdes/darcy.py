r"""Darcy flow: :math:`-\nabla\cdot(a\nabla u) = f` on the unit square, u = 0 on the boundary.

Recipe of the FNO and DiffusionPDE benchmarks (Li et al. 2021, "Fourier neural operator
for parametric PDEs"; Huang et al. 2024, "DiffusionPDE"): ``f = 1``; the permeability is a
two-valued field thresholded from a Gaussian random field ``g`` with covariance
:math:`(-\Delta + \tau^2)^{-\alpha}`, :math:`\alpha = 2`, :math:`\tau = 3` (Neumann modes
on the square, as the cosine series of the FNO generator, whose constant mode is removed
so that ``g`` has zero spatial mean and both phases appear in almost every sample),

.. math:: a(x) = 12 \text{ where } g(x) \ge 0, \qquad a(x) = 3 \text{ elsewhere}.

Discretisation: the conservative five-point finite-difference/finite-volume stencil of
:mod:`sciml_diffusion.pdes.elliptic` on the node grid (spacing :math:`h = 1/(n-1)`), face
permeabilities the arithmetic mean of the two nodes, one sparse LU factorisation
(``scipy.sparse.linalg.splu``) per sample. Second order for smooth ``a``.

Residual: :math:`r = -\nabla_h\cdot(a\nabla_h u) - f` at the interior nodes, in physical
units (the published DiffusionPDE residual omits the :math:`1/h` factors, so its value at
the ground truth is O(1) instead of 0).
"""

from __future__ import annotations

import numpy as np
import torch

from sciml_diffusion.fields import GaussianRandomField, Grid
from sciml_diffusion.pdes.base import Variable, check_positive, unpack_fields
from sciml_diffusion.pdes.elliptic import DirichletProblem, apply_operator, check_bounded_grid

__all__ = ["Darcy"]


class Darcy(DirichletProblem):
    """Steady Darcy flow with a thresholded-GRF permeability.

    Parameters
    ----------
    alpha, tau : float
        GRF covariance :math:`(-\\Delta + \\tau^2)^{-\\alpha}` of the field thresholded.
    high, low : float
        Permeability where the GRF is >= 0 and < 0.
    source : float
        Constant forcing ``f``.
    """

    name = "darcy"
    input_name = "a"
    variables = (
        Variable("a", "input", "permeability"),
        Variable("u", "solution", "pressure"),
    )

    def __init__(
        self,
        alpha: float = 2.0,
        tau: float = 3.0,
        high: float = 12.0,
        low: float = 3.0,
        source: float = 1.0,
    ):
        self.alpha = float(alpha)
        self.tau = check_positive("tau", tau)
        self.high = check_positive("high permeability", high)
        self.low = check_positive("low permeability", low)
        self.source = float(source)
        self.grf = GaussianRandomField(self.alpha, self.tau, boundary="neumann", mean_zero=True)

    def parameters(self) -> dict:
        return {
            "alpha": self.alpha,
            "tau": self.tau,
            "high": self.high,
            "low": self.low,
            "source": self.source,
            "grf_boundary": "neumann",
            "grf_mean_zero": 1,
        }

    def sample_input(self, grid: Grid, generator: torch.Generator) -> np.ndarray:
        """The permeability ``(ny, nx)``: ``high`` where the GRF is >= 0, ``low`` elsewhere."""
        g = self.grf.sample(grid, 1, generator=generator, dtype=torch.float64)[0].numpy()
        return np.where(g >= 0, self.high, self.low)

    def coefficients(self, field: np.ndarray) -> tuple:
        return field, 0.0, self.source

    def residual(self, fields, grid: Grid) -> torch.Tensor:
        """``-div(a grad u) - f`` at the interior nodes.

        Parameters
        ----------
        fields : torch.Tensor (B, 2, ny, nx) with channels ``(a, u)``, or mapping
            ``{"a": (B, ny, nx), "u": (B, ny, nx)}``.
        grid : Grid
            The 2-D non-periodic grid of the fields.

        Returns
        -------
        torch.Tensor (B, ny-2, nx-2)
        """
        hy, hx = check_bounded_grid(grid, self.name)
        parts = unpack_fields(fields, ("a", "u"), grid.ndim)
        return apply_operator(parts["a"], parts["u"], hy, hx) - self.source
