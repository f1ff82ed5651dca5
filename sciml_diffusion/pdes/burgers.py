r"""Viscous Burgers equation in 1-D on the periodic unit interval.

.. math:: \partial_t u + \partial_x(u^2/2) = \nu\,\partial_{xx} u, \qquad x \in [0, 1)
          \text{ periodic}.

Recipe of the FNO Burgers benchmark (Li et al. 2021, sec. 5.1): initial condition a
periodic Gaussian random field with covariance :math:`625(-\Delta + 25)^{-2}`
(:math:`\alpha = 2`, :math:`\tau = 5`, :math:`\sigma = 25`), :math:`\nu = 0.1`,
:math:`T = 1`; here the whole trajectory is saved (``steps + 1`` frames).

Discretisation: Fourier pseudo-spectral, the flux :math:`u^2/2` computed on the grid and
dealiased by the 2/3 rule, integrating-factor RK4 in time (viscous term exact); batched
torch on any device (:mod:`sciml_diffusion.pdes.spectral`). Verified against the
Cole–Hopf solution :math:`u = -2\nu\,\partial_x \log\phi`, :math:`\partial_t\phi =
\nu\partial_{xx}\phi` (:func:`cole_hopf`).

Residual between saved frames :math:`u^j, u^{j+1}` a time :math:`\Delta t` apart: the
integrating-factor Crank–Nicolson form of the equation (viscous term exact, flux by the
trapezoidal rule), with :math:`E = e^{-\nu k^2\Delta t}` and
:math:`N(u) = -\mathcal{P}_{2/3}\,\partial_x(u^2/2)`,

.. math:: \hat r^{j+1/2} = \frac{\hat u^{j+1} - E\hat u^j}{\Delta t}
    - \tfrac12\left[N(\hat u^{j+1}) + E\,N(\hat u^j)\right],

in the units of :math:`\partial_t u`; :math:`O(\Delta t^2)` on the generator's
trajectories (see :mod:`sciml_diffusion.pdes.vorticity`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sciml_diffusion.fields import GaussianRandomField, Grid
from sciml_diffusion.pdes.base import Variable, check_positive, unpack_fields
from sciml_diffusion.pdes.evolution import EvolutionProblem
from sciml_diffusion.pdes.spectral import (
    SemilinearEquation,
    SpectralGrid,
    check_periodic_grid,
)

__all__ = ["Burgers", "BurgersEquation", "cole_hopf"]


class BurgersEquation(SemilinearEquation):
    """Pseudo-spectral viscous Burgers equation on a periodic 1-D grid.

    Parameters
    ----------
    grid : Grid
        Periodic 1-D grid.
    viscosity : float
        ``nu`` (> 0).
    device, dtype
        Where and in which real precision to compute.
    """

    def __init__(self, grid: Grid, viscosity: float, device=None, dtype=torch.float64):
        self.spectral = SpectralGrid(grid, device=device, dtype=dtype)
        self.viscosity = float(viscosity)
        self.linear = -self.viscosity * self.spectral.k2

    def flux_divergence(self, u_hat: torch.Tensor) -> torch.Tensor:
        """Spectral coefficients of the dealiased ``d/dx (u^2 / 2)``."""
        u = self.inverse(u_hat)
        return self.spectral.mask * self.spectral.ik[0] * self.forward(0.5 * u * u)

    def nonlinear(self, u_hat: torch.Tensor) -> torch.Tensor:
        """Explicit part of the tendency, ``-d/dx (u^2 / 2)``."""
        return -self.flux_divergence(u_hat)

    def cfl(self, u_hat: torch.Tensor, dt: float) -> float:
        """Advective CFL number ``dt max|u| k_max`` (retained modes)."""
        return float(dt * self.inverse(u_hat).abs().max() * self.spectral.max_k[0])


class Burgers(EvolutionProblem):
    """Viscous Burgers trajectories on the periodic unit interval.

    Parameters
    ----------
    viscosity : float
        ``nu`` (> 0).
    final_time : float
        ``T``.
    steps : int
        Number of saved intervals; frames at ``j T / steps``.
    dt : float
        Largest integrator step.
    alpha, tau, sigma : float
        Covariance :math:`\\sigma^2(-\\Delta + \\tau^2)^{-\\alpha}` of the initial condition.
    """

    name = "burgers"
    spatial_ndim = 1
    variables = (Variable("u", "solution", "velocity trajectory"),)

    def __init__(
        self,
        viscosity: float = 0.1,
        final_time: float = 1.0,
        steps: int = 20,
        dt: float = 1e-3,
        alpha: float = 2.0,
        tau: float = 5.0,
        sigma: float = 25.0,
    ):
        self.viscosity = check_positive("viscosity", viscosity)
        self._set_times(final_time, steps, dt, spinup=0.0)
        self.alpha = float(alpha)
        self.tau = check_positive("tau", tau)
        self.sigma = check_positive("sigma", sigma)
        self.grf = GaussianRandomField(self.alpha, self.tau, self.sigma, boundary="periodic")

    def parameters(self) -> dict:
        return {
            "viscosity": self.viscosity,
            "final_time": self.final_time,
            "steps": self.steps,
            "dt": self.dt,
            "alpha": self.alpha,
            "tau": self.tau,
            "sigma": self.sigma,
        }

    def default_grid(self, resolution: int) -> Grid:
        """The periodic unit interval with ``resolution`` nodes."""
        return Grid.regular((resolution,), lengths=1.0, periodic=True)

    def check_grid(self, grid: Grid) -> None:
        check_periodic_grid(grid, 1, self.name)

    def equation(self, grid: Grid, device=None, dtype=torch.float64) -> BurgersEquation:
        return BurgersEquation(grid, self.viscosity, device=device, dtype=dtype)

    def initial_condition(self, grid: Grid, generator: torch.Generator) -> torch.Tensor:
        return self.grf.sample(grid, 1, generator=generator, dtype=torch.float64)[0]

    def trajectory_fields(self, trajectory: torch.Tensor) -> dict:
        return {"u": trajectory}

    def residual(self, fields, grid: Grid, interval: float | None = None) -> torch.Tensor:
        """Integrating-factor Crank–Nicolson residual of Burgers trajectories.

        Parameters
        ----------
        fields : torch.Tensor (B, T, 1, nx) or mapping ``{"u": (B, T, nx)}``
            The velocity at ``T >= 2`` equally spaced times.
        grid : Grid
            The periodic 1-D grid.
        interval : float, optional
            Time between frames (default ``final_time / steps``).

        Returns
        -------
        torch.Tensor (B, T - 1, nx)
        """
        self.check_grid(grid)
        u = unpack_fields(fields, ("u",), grid.ndim)["u"]
        if u.ndim != 3 or u.shape[1] < 2:
            raise ValueError(f"u of shape {tuple(u.shape)} is not a trajectory (B, T >= 2, nx)")
        equation = self.equation(grid, device=u.device, dtype=u.dtype)
        interval = self.interval if interval is None else check_positive("interval", interval)
        return equation.residual(u, interval)


def cole_hopf(
    potential: np.ndarray, x: np.ndarray, times: np.ndarray, viscosity: float
) -> np.ndarray:
    r"""Exact periodic Burgers solution by the Cole–Hopf transform.

    For :math:`u_0 = \partial_x P` with a periodic potential :math:`P`, the solution is
    :math:`u = -2\nu\,\partial_x\phi/\phi` where :math:`\phi` solves the heat equation
    :math:`\phi_t = \nu\phi_{xx}` from :math:`\phi_0 = \exp(-P/(2\nu))`. The heat equation is
    solved exactly mode by mode on the given (fine, periodic, length-1) grid, so the
    result is exact up to the truncation of :math:`\phi_0`'s Fourier series.

    Parameters
    ----------
    potential : ndarray (nx,)
        :math:`P` at the nodes ``x`` of the periodic unit interval.
    x : ndarray (nx,)
        Nodes ``j / nx``.
    times : ndarray (T,)
        Times at which to evaluate.
    viscosity : float
        ``nu``.

    Returns
    -------
    ndarray (T, nx)
    """
    nx = x.size
    k = 2 * math.pi * np.fft.fftfreq(nx, 1.0 / nx)
    phi0_hat = np.fft.fft(np.exp(-(potential - potential.min()) / (2 * viscosity)))
    out = []
    for t in np.atleast_1d(times):
        phi_hat = phi0_hat * np.exp(-viscosity * k**2 * t)
        phi = np.fft.ifft(phi_hat).real
        phi_x = np.fft.ifft(1j * k * phi_hat).real
        out.append(-2 * viscosity * phi_x / phi)
    return np.stack(out)
