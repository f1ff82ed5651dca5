r"""Helmholtz: :math:`\Delta u + k^2 u = f` on the unit square, u = 0 on the boundary.

Default wavenumber :math:`k = 1`. Two data conventions (``convention=``), same equation:

- ``"ours"`` (default): the source is a Gaussian random field with covariance
  :math:`\sigma^2(-\Delta + \tau^2)^{-\alpha}` sampled at the nodes (Neumann modes;
  :math:`\alpha = 2`, :math:`\tau = 3`, :math:`\sigma = 10`).
- ``"diffusionpde"``: the DiffusionPDE / FunDPS benchmark (Huang et al. 2024,
  ``generate_inhom_helmholtz.m``): the source is their ``GRF.m`` field
  (:func:`~sciml_diffusion.pdes.diffusionpde.cosine_grf`, zero mean,
  :math:`\sigma = \tau^{\alpha-1}`) with ``f = 0`` on the boundary rows and columns.

The problem is well posed while :math:`k^2` is not an eigenvalue of
the Dirichlet Laplacian (the smallest is :math:`2\pi^2 \approx 19.7` on the unit square);
a :math:`k` within 1e-8 (relative) of a discrete eigenvalue is refused.

Discretisation: the five-point Laplacian on the node grid (spacing :math:`h = 1/(n-1)`),
second order, one sparse LU solve of :math:`(-\Delta_h - k^2) u = -f` per sample
(:mod:`sciml_diffusion.pdes.elliptic`).

Residual: :math:`r = \Delta_h u + k^2 u - f` at the interior nodes, in physical units.
"""

from __future__ import annotations

import numpy as np
import torch

from sciml_diffusion.fields import GaussianRandomField, Grid
from sciml_diffusion.fields.dataset import FieldDataset
from sciml_diffusion.pdes.base import Variable, check_positive, resolve_grid, unpack_fields
from sciml_diffusion.pdes.diffusionpde import check_convention, cosine_grf
from sciml_diffusion.pdes.elliptic import (
    DirichletProblem,
    apply_operator,
    check_bounded_grid,
    laplacian_eigenvalues,
)

__all__ = ["Helmholtz"]

_RESONANCE_RTOL = 1e-8


class Helmholtz(DirichletProblem):
    """Helmholtz equation ``Laplacian u + k^2 u = f`` with a GRF source, zero Dirichlet data.

    Parameters
    ----------
    wavenumber : float
        ``k`` (>= 0).
    alpha, tau, sigma : float
        Covariance :math:`\\sigma^2(-\\Delta + \\tau^2)^{-\\alpha}` of the source;
        ``sigma`` defaults to 10 (``"ours"``) or ``tau**(alpha - 1)`` (``"diffusionpde"``).
    convention : str
        ``"ours"`` or ``"diffusionpde"`` (their source, zero on the boundary).
    """

    name = "helmholtz"
    input_name = "f"
    variables = (
        Variable("f", "input", "source"),
        Variable("u", "solution", "wave amplitude"),
    )

    def __init__(
        self,
        wavenumber: float = 1.0,
        alpha: float = 2.0,
        tau: float = 3.0,
        sigma: float | None = None,
        convention: str = "ours",
    ):
        if not float(wavenumber) >= 0:
            raise ValueError(f"wavenumber k must be >= 0, got {wavenumber}")
        self.convention = check_convention(convention)
        self.wavenumber = float(wavenumber)
        self.alpha = float(alpha)
        self.tau = check_positive("tau", tau)
        if sigma is None:
            sigma = 10.0 if self.convention == "ours" else self.tau ** (self.alpha - 1)
        self.sigma = check_positive("sigma", sigma)
        self.grf = GaussianRandomField(self.alpha, self.tau, self.sigma, boundary="neumann")

    def parameters(self) -> dict:
        return {
            "wavenumber": self.wavenumber,
            "alpha": self.alpha,
            "tau": self.tau,
            "sigma": self.sigma,
            "convention": self.convention,
        }

    def check_resonance(self, grid: Grid) -> None:
        """Refuse a ``k^2`` that is (nearly) an eigenvalue of the discrete Laplacian."""
        k2 = self.wavenumber**2
        eig = laplacian_eigenvalues(grid)
        nearest = float(eig.flat[np.argmin(np.abs(eig - k2))])
        if abs(nearest - k2) <= _RESONANCE_RTOL * max(k2, 1.0):
            raise ValueError(
                f"k^2 = {k2:.6g} is an eigenvalue ({nearest:.6g}) of the discrete Laplacian on "
                f"{grid}; the Helmholtz problem is singular there, choose another wavenumber"
            )

    def generate(self, n: int, grid: Grid | int, seed: int = 0, **options) -> FieldDataset:
        grid = resolve_grid(self, grid)
        check_bounded_grid(grid, self.name)
        self.check_resonance(grid)
        return super().generate(n, grid, seed, **options)

    generate.__doc__ = DirichletProblem.generate.__doc__

    def fixed_nodes(self, grid: Grid) -> dict[str, np.ndarray]:
        """``u = 0`` on the boundary; in the ``diffusionpde`` convention ``f = 0`` there too."""
        fixed = super().fixed_nodes(grid)
        if self.convention == "diffusionpde":
            fixed["f"] = fixed["u"].copy()
        return fixed

    def sample_input(self, grid: Grid, generator: torch.Generator) -> np.ndarray:
        """The source ``(ny, nx)`` of one sample."""
        if self.convention == "diffusionpde":
            f = cosine_grf(grid.shape, self.alpha, self.tau, self.sigma, generator)
            f[0, :] = f[-1, :] = f[:, 0] = f[:, -1] = 0.0
            return f
        return self.grf.sample(grid, 1, generator=generator, dtype=torch.float64)[0].numpy()

    def coefficients(self, field: np.ndarray) -> tuple:
        return np.ones_like(field), -(self.wavenumber**2), -field

    def residual(self, fields, grid: Grid) -> torch.Tensor:
        """``Laplacian u + k^2 u - f`` at the interior nodes.

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
        operator = apply_operator(1.0, parts["u"], hy, hx, c=-(self.wavenumber**2))
        return -operator - parts["f"][..., 1:-1, 1:-1]
