r"""2-D incompressible Navier–Stokes in vorticity form on the periodic unit square.

.. math::

    \partial_t w + \mathbf{u}\cdot\nabla w = \nu\Delta w + f, \qquad
    -\Delta\psi = w,\quad \mathbf{u} = (\partial_y\psi, -\partial_x\psi),
    \qquad (x, y) \in [0, 1)^2 \text{ periodic}.

Recipe of the FNO benchmark (Li et al. 2021, sec. 5.3): :math:`\nu = 10^{-3}`, forcing
:math:`f = 0.1(\sin 2\pi(x+y) + \cos 2\pi(x+y))`, initial vorticity a periodic Gaussian
random field with covariance :math:`\sigma^2(-\Delta + \tau^2)^{-\alpha}`,
:math:`\alpha = 2.5`, :math:`\tau = 7`, :math:`\sigma = \tau^{3/2}`, final time
:math:`T = 1`. The initial vorticity has zero mean (the vorticity of a periodic velocity
integrates to 0; the mean would be carried unchanged to every frame).

Two data conventions (``convention=``) for that field:

- ``"ours"`` (default): the point values of the field with the stated covariance (aliases
  summed), pointwise std 0.185.
- ``"diffusionpde"``: the FNO / DiffusionPDE generator (``random_fields.py``), the real
  part of a complex draw with :math:`\sqrt2` scaling, i.e. spectrum
  :math:`2\sigma^2(4\pi^2|k|^2+\tau^2)^{-\alpha}` on the grid's wavenumbers, no aliases:
  pointwise std 0.262 at 128² (FunDPS measured 0.2621). Their solver (Crank–Nicolson for
  viscosity, explicit Euler for advection, step 1e-4) is replaced by ours, which is more
  accurate; they save frames at ``t = 0.1 .. 1`` and the set pairs ``w(0)`` with ``w(1)``.

Discretisation (:mod:`sciml_diffusion.pdes.vorticity`): Fourier pseudo-spectral in space
with 2/3 dealiasing, integrating-factor RK4 in time (viscous term exact), batched torch on
any device. A data set holds the whole trajectory ``vorticity (sample, time, y, x)`` at
``steps + 1`` equally spaced times in :math:`[0, T]`, for forecasting, and the pair
``w0 = w(0)``, ``wT = w(T)`` ``(sample, y, x)`` for inverse problems.

Residual: the integrating-factor Crank–Nicolson discretisation of the vorticity equation between
consecutive saved frames (time derivative by finite difference), spectral in space, see
:meth:`VorticityEquation.residual`.
"""

from __future__ import annotations

import math

import torch

from sciml_diffusion.fields import GaussianRandomField, Grid
from sciml_diffusion.pdes.base import Variable, check_positive
from sciml_diffusion.pdes.diffusionpde import check_convention
from sciml_diffusion.pdes.vorticity import VorticityEquation, VorticityProblem

__all__ = ["NavierStokes"]


class NavierStokes(VorticityProblem):
    """Forced 2-D Navier–Stokes (vorticity form) on the periodic unit square.

    Parameters
    ----------
    viscosity : float
        ``nu`` (> 0).
    forcing : float
        Amplitude of ``sin 2pi(x+y) + cos 2pi(x+y)`` (0 for the unforced equation).
    final_time : float
        ``T``.
    steps : int
        Number of saved intervals; frames at ``j T / steps``, ``j = 0..steps``.
    dt : float
        Largest integrator step (the step used divides ``T / steps``).
    alpha, tau, sigma : float
        Covariance of the initial vorticity; ``sigma`` defaults to ``tau**1.5``.
    convention : str
        ``"ours"`` or ``"diffusionpde"`` (their initial-vorticity sampler).
    """

    name = "navier_stokes"
    variables = (
        Variable("w0", "input", "initial vorticity"),
        Variable("wT", "solution", "vorticity at the final time"),
        Variable("vorticity", "solution", "vorticity trajectory"),
    )

    def __init__(
        self,
        viscosity: float = 1e-3,
        forcing: float = 0.1,
        final_time: float = 1.0,
        steps: int = 10,
        dt: float = 5e-3,
        alpha: float = 2.5,
        tau: float = 7.0,
        sigma: float | None = None,
        convention: str = "ours",
    ):
        self.convention = check_convention(convention)
        self.viscosity = check_positive("viscosity", viscosity)
        self.forcing = float(forcing)
        self._set_times(final_time, steps, dt, spinup=0.0)
        self.alpha = float(alpha)
        self.tau = check_positive("tau", tau)
        self.sigma = check_positive("sigma", sigma if sigma is not None else self.tau**1.5)
        if self.convention == "ours":
            self.grf = GaussianRandomField(
                self.alpha, self.tau, self.sigma, boundary="periodic", mean_zero=True
            )
        else:  # Re of (xi + i eta) sqrt(2) sigma sqrt(lambda_k): variance 2 sigma^2 lambda_k
            self.grf = GaussianRandomField(
                self.alpha,
                self.tau,
                math.sqrt(2.0) * self.sigma,
                boundary="periodic",
                images=0,
                mean_zero=True,
            )

    def parameters(self) -> dict:
        return {
            "viscosity": self.viscosity,
            "forcing": self.forcing,
            "final_time": self.final_time,
            "steps": self.steps,
            "dt": self.dt,
            "alpha": self.alpha,
            "tau": self.tau,
            "sigma": self.sigma,
            "convention": self.convention,
        }

    def default_grid(self, resolution: int) -> Grid:
        """The periodic unit square with ``resolution`` nodes per axis."""
        return Grid.regular((resolution, resolution), lengths=1.0, periodic=True)

    def forcing_field(self, grid: Grid, device=None, dtype=torch.float64) -> torch.Tensor:
        """``forcing * (sin 2pi(x+y) + cos 2pi(x+y))`` at the nodes, ``(ny, nx)``."""
        y, x = grid.mesh(dtype=dtype, device=device)
        phase = 2 * math.pi * (x + y)
        return self.forcing * (torch.sin(phase) + torch.cos(phase))

    def equation(self, grid: Grid, device=None, dtype=torch.float64) -> VorticityEquation:
        forcing = self.forcing_field(grid, device, dtype) if self.forcing != 0 else None
        return VorticityEquation(grid, self.viscosity, forcing, device=device, dtype=dtype)

    def trajectory_fields(self, trajectory: torch.Tensor) -> dict:
        return {"w0": trajectory[:, 0], "wT": trajectory[:, -1], "vorticity": trajectory}
