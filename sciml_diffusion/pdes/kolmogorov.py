r"""Kolmogorov flow: 2-D turbulence driven by a steady shear forcing on a periodic box.

.. math::

    \partial_t \mathbf{u} + \mathbf{u}\cdot\nabla\mathbf{u} + \nabla p
      = \nu\Delta\mathbf{u} - \mu\mathbf{u} + \chi\sin(n y)\,\hat{\mathbf{x}},
    \qquad \nabla\cdot\mathbf{u} = 0, \qquad (x, y) \in [0, 2\pi)^2 \text{ periodic},

solved in vorticity form, :math:`\partial_t w + \mathbf{u}\cdot\nabla w = \nu\Delta w
- \mu w - n\chi\cos(n y)` (:mod:`sciml_diffusion.pdes.vorticity`). With :math:`\chi = 1`
the Reynolds number is :math:`Re = 1/\nu` (Chandler & Kerswell 2013, "Invariant recurrent
solutions embedded in a turbulent two-dimensional Kolmogorov flow", whose n = 4 flow is
already turbulent at Re = 40). Defaults: :math:`n = 4`, :math:`Re = 100` (chaotic: two
trajectories 1e-6 apart separate to O(1) within the spin-up, see the tests), no drag.

Recipe for the forecasting benchmarks: initial vorticity a periodic Gaussian random field
(:math:`\alpha = 2.5`, :math:`\tau = 3`, :math:`\sigma = 10`), a spin-up (default 50 time
units) integrated and discarded, then ``steps + 1`` frames over ``final_time``.

Discretisation: Fourier pseudo-spectral with 2/3 dealiasing, integrating-factor RK4.
Residual: the Crank–Nicolson residual between consecutive saved frames, as for
:mod:`~sciml_diffusion.pdes.navier_stokes`.
"""

from __future__ import annotations

import math

import torch

from sciml_diffusion.fields import GaussianRandomField, Grid
from sciml_diffusion.pdes.base import Variable, check_positive
from sciml_diffusion.pdes.vorticity import VorticityEquation, VorticityProblem

__all__ = ["Kolmogorov"]


class Kolmogorov(VorticityProblem):
    """Forced 2-D turbulence with forcing ``sin(n y)`` on the periodic box ``[0, 2 pi)^2``.

    Parameters
    ----------
    reynolds : float
        ``Re = 1 / nu`` (forcing amplitude 1).
    wavenumber : int
        Forcing wavenumber ``n``.
    drag : float
        Linear drag ``mu`` (>= 0).
    final_time : float
        Length of the saved trajectory, after the spin-up.
    steps : int
        Number of saved intervals.
    dt : float
        Largest integrator step.
    spinup : float
        Time integrated and discarded before the first saved frame.
    alpha, tau, sigma : float
        Covariance of the initial vorticity.
    """

    name = "kolmogorov"
    variables = (Variable("vorticity", "solution", "vorticity trajectory"),)

    def __init__(
        self,
        reynolds: float = 100.0,
        wavenumber: int = 4,
        drag: float = 0.0,
        final_time: float = 10.0,
        steps: int = 50,
        dt: float = 5e-3,
        spinup: float = 50.0,
        alpha: float = 2.5,
        tau: float = 3.0,
        sigma: float = 10.0,
    ):
        self.reynolds = check_positive("Reynolds number", reynolds)
        if isinstance(wavenumber, bool) or int(wavenumber) != wavenumber or wavenumber < 1:
            raise ValueError(f"forcing wavenumber must be a positive integer, got {wavenumber}")
        self.wavenumber = int(wavenumber)
        if not float(drag) >= 0:
            raise ValueError(f"drag must be >= 0, got {drag}")
        self.drag = float(drag)
        self._set_times(final_time, steps, dt, spinup)
        self.alpha = float(alpha)
        self.tau = check_positive("tau", tau)
        self.sigma = check_positive("sigma", sigma)
        self.grf = GaussianRandomField(self.alpha, self.tau, self.sigma, boundary="periodic")

    @property
    def viscosity(self) -> float:
        """``nu = 1 / Re``."""
        return 1.0 / self.reynolds

    def parameters(self) -> dict:
        return {
            "reynolds": self.reynolds,
            "viscosity": self.viscosity,
            "wavenumber": self.wavenumber,
            "drag": self.drag,
            "final_time": self.final_time,
            "steps": self.steps,
            "dt": self.dt,
            "spinup": self.spinup,
            "alpha": self.alpha,
            "tau": self.tau,
            "sigma": self.sigma,
        }

    def default_grid(self, resolution: int) -> Grid:
        """The periodic box ``[0, 2 pi)^2`` with ``resolution`` nodes per axis."""
        return Grid.regular((resolution, resolution), lengths=2 * math.pi, periodic=True)

    def check_grid(self, grid: Grid) -> None:
        super().check_grid(grid)
        ny = grid.shape[0]
        if self.wavenumber > (ny - 1) // 3:
            raise ValueError(
                f"forcing wavenumber {self.wavenumber} is not resolved by {ny} nodes in y "
                f"after dealiasing; use at least {3 * self.wavenumber + 1} nodes"
            )

    def forcing_field(self, grid: Grid, device=None, dtype=torch.float64) -> torch.Tensor:
        """Vorticity forcing ``-n cos(n y)`` at the nodes, ``(ny, nx)``."""
        y, _ = grid.mesh(dtype=dtype, device=device)
        n = self.wavenumber
        return -n * torch.cos(n * y * (2 * math.pi / grid.lengths[0]))

    def equation(self, grid: Grid, device=None, dtype=torch.float64) -> VorticityEquation:
        forcing = self.forcing_field(grid, device, dtype)
        return VorticityEquation(
            grid, self.viscosity, forcing, drag=self.drag, device=device, dtype=dtype
        )

    def trajectory_fields(self, trajectory: torch.Tensor) -> dict:
        return {"vorticity": trajectory}
