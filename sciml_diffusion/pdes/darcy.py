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

Two data conventions (``convention=``):

- ``"ours"`` (default): ``a`` and ``u`` on the ``n`` nodes of each axis, boundary nodes
  included (``u = 0`` there), the GRF sampled at the nodes (its aliases summed).
- ``"diffusionpde"``: the pipeline of DiffusionPDE's ``generate_darcy.m`` /
  ``solve_gwf.m`` (Huang et al. 2024; FunDPS reuses the data): the GRF is their ``GRF.m``
  field on the ``n`` cell centres :math:`(i+\tfrac12)/n`
  (:func:`~sciml_diffusion.pdes.diffusionpde.cosine_grf`), ``a`` is thresholded there,
  spline-interpolated to the ``n`` nodes of :math:`[0,1]` (not-a-knot cubic, extrapolated
  to the end nodes), the equation solved on the nodes by the same stencil, and ``u``
  spline-interpolated back to the cell centres. The data live on
  :func:`~sciml_diffusion.pdes.diffusionpde.cell_centred_grid`: no boundary points, and
  ``u`` is not 0 on the edge rows. The residual interpolates ``a`` and ``u`` to the nodes
  the same way and applies the node stencil (not 0 at the data: the node → centre → node
  round trip is not the identity).
"""

from __future__ import annotations

import numpy as np
import torch

from sciml_diffusion.fields import GaussianRandomField, Grid
from sciml_diffusion.pdes.base import Variable, check_positive, unpack_fields
from sciml_diffusion.pdes.diffusionpde import (
    cell_centred_grid,
    cell_node_matrices,
    check_convention,
    cosine_grf,
    is_cell_centred,
    spline_resample,
)
from sciml_diffusion.pdes.elliptic import (
    DirichletProblem,
    apply_operator,
    check_bounded_grid,
    solve_dirichlet,
)

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
    convention : str
        ``"ours"`` (node grid) or ``"diffusionpde"`` (their cell-centred pipeline).
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
        convention: str = "ours",
    ):
        self.convention = check_convention(convention)
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
            "convention": self.convention,
        }

    def default_grid(self, resolution: int) -> Grid:
        """The unit square's nodes (``"ours"``) or cell centres (``"diffusionpde"``)."""
        if self.convention == "diffusionpde":
            return cell_centred_grid(resolution)
        return super().default_grid(resolution)

    def fixed_nodes(self, grid: Grid) -> dict[str, np.ndarray]:
        """``u = 0`` on the boundary nodes; none in the cell layout (no boundary points)."""
        return {} if self.convention == "diffusionpde" else super().fixed_nodes(grid)

    def sample_input(self, grid: Grid, generator: torch.Generator) -> np.ndarray:
        """The permeability ``(ny, nx)``: ``high`` where the GRF is >= 0, ``low`` elsewhere."""
        if self.convention == "diffusionpde":
            g = cosine_grf(grid.shape, self.alpha, self.tau, 1.0, generator)
        else:
            g = self.grf.sample(grid, 1, generator=generator, dtype=torch.float64)[0].numpy()
        return np.where(g >= 0, self.high, self.low)

    def solve(self, field: np.ndarray, grid: Grid) -> np.ndarray:
        """The solution ``(ny, nx)`` on ``grid`` for the permeability ``field`` on ``grid``."""
        if self.convention == "ours":
            return super().solve(field, grid)
        (to_nodes, to_centres), spacing = self._cell_transfer(grid)
        field = np.asarray(field, dtype=np.float64)
        if field.shape != grid.shape:
            raise ValueError(f"input field of shape {field.shape} does not match {grid}")
        a_nodes = spline_resample(field, to_nodes)
        u_nodes = solve_dirichlet(a_nodes, self.source, *spacing)
        return spline_resample(u_nodes, to_centres)

    def _cell_transfer(self, grid: Grid):
        """``((P_y, P_x) to nodes, (Q_y, Q_x) to centres), (h_y, h_x)`` of a cell grid."""
        check_bounded_grid(grid, self.name)
        if not is_cell_centred(grid):
            raise ValueError(
                f"the diffusionpde Darcy convention lives on the unit square's cell centres "
                f"(i + 1/2)/n, got {grid}; pass a resolution or cell_centred_grid(n)"
            )
        matrices = [cell_node_matrices(n) for n in grid.shape]
        to_nodes = tuple(m[0] for m in matrices)
        to_centres = tuple(m[1] for m in matrices)
        return (to_nodes, to_centres), tuple(1.0 / (n - 1) for n in grid.shape)

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
        torch.Tensor (B, ny-2, nx-2): on the nodes' interior (``"diffusionpde"``: the
        fields are first spline-interpolated from the cell centres to the nodes).
        """
        hy, hx = check_bounded_grid(grid, self.name)
        parts = unpack_fields(fields, ("a", "u"), grid.ndim)
        a, u = parts["a"], parts["u"]
        if self.convention == "diffusionpde":
            (to_nodes, _), (hy, hx) = self._cell_transfer(grid)
            a, u = spline_resample(a, to_nodes), spline_resample(u, to_nodes)
        return apply_operator(a, u, hy, hx) - self.source
