r"""The 2-D incompressible Navier–Stokes equations in vorticity form on a periodic box.

.. math::

    \partial_t w + \mathbf{u}\cdot\nabla w = \nu\Delta w - \mu w + F, \qquad
    -\Delta\psi = w, \qquad \mathbf{u} = (\partial_y\psi, -\partial_x\psi),

with vorticity :math:`w = \partial_x v - \partial_y u`, viscosity :math:`\nu`, linear drag
:math:`\mu \ge 0` and a steady vorticity forcing :math:`F`. The mean of :math:`w` is
constant (zero for the forcings used here); :math:`\psi` has zero mean.

Space: Fourier pseudo-spectral (:mod:`sciml_diffusion.pdes.spectral`), the advection
term :math:`\mathbf{u}\cdot\nabla w` computed on the grid and dealiased by the 2/3 rule.
Time: integrating-factor RK4 (exact for :math:`\nu\Delta - \mu`, RK4 for advection and
forcing). Used by :mod:`~sciml_diffusion.pdes.navier_stokes` and
:mod:`~sciml_diffusion.pdes.kolmogorov`.

Residual between saved frames :math:`w^j, w^{j+1}` a time :math:`\Delta t` apart: the
equation in integrating-factor form, :math:`\partial_t(e^{-\Lambda t}\hat w) =
e^{-\Lambda t} N(\hat w)` with :math:`\Lambda = -\nu|k|^2 - \mu` and
:math:`N(w) = -\mathcal{P}_{2/3}(\mathbf{u}\cdot\nabla w) + F`, its time derivative by a
finite difference and the right side by the trapezoidal rule (a Crank–Nicolson scheme
that treats the stiff viscous term exactly), with :math:`E = e^{\Lambda\Delta t}`:

.. math::

    \hat r^{j+1/2} = \frac{\hat w^{j+1} - E\hat w^j}{\Delta t}
      - \tfrac12\left[N(\hat w^{j+1}) + E\,N(\hat w^j)\right].

Without viscosity it is the plain Crank–Nicolson residual :math:`(w^{j+1}-w^j)/\Delta t
+ \tfrac12[A(w^{j+1}) + A(w^j)] - F`. It is in the units of :math:`\partial_t w`, vanishes
for a sequence that satisfies this scheme exactly (any exact solution of the linear,
unforced part, e.g. the Taylor–Green vortex, satisfies it to rounding), and is
:math:`O(\Delta t^2)` for the generator's RK4 trajectories.
"""

from __future__ import annotations

import torch

from sciml_diffusion.fields import Grid
from sciml_diffusion.pdes.base import check_positive, unpack_fields
from sciml_diffusion.pdes.evolution import EvolutionProblem
from sciml_diffusion.pdes.spectral import (
    SemilinearEquation,
    SpectralGrid,
    check_periodic_grid,
)

__all__ = ["VorticityEquation", "VorticityProblem"]


class VorticityEquation(SemilinearEquation):
    """Pseudo-spectral vorticity equation on a periodic 2-D grid.

    Parameters
    ----------
    grid : Grid
        Periodic ``(ny, nx)`` grid.
    viscosity : float
        ``nu`` (> 0).
    forcing : torch.Tensor (ny, nx), optional
        Vorticity forcing ``F`` at the nodes (default 0).
    drag : float
        Linear drag coefficient ``mu`` (>= 0).
    device, dtype
        Where and in which real precision to compute.
    """

    field_name = "vorticity"

    def __init__(
        self,
        grid: Grid,
        viscosity: float,
        forcing=None,
        drag=0.0,
        device=None,
        dtype=torch.float64,
    ):
        self.spectral = SpectralGrid(grid, device=device, dtype=dtype)
        self.viscosity = float(viscosity)
        self.drag = float(drag)
        k2 = self.spectral.k2
        self.inverse_laplacian = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
        self.linear = -(self.viscosity * k2 + self.drag)
        if forcing is None:
            self.forcing = None
        else:
            forcing = torch.as_tensor(forcing, device=device, dtype=dtype)
            self.forcing = self.spectral.forward(forcing)

    def velocity(self, w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocity ``(u, v)`` (x and y components) at the nodes."""
        psi_hat = self.inverse_laplacian * w_hat
        u = self.spectral.derivative(psi_hat, axis=0)
        v = -self.spectral.derivative(psi_hat, axis=1)
        return u, v

    def advection(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Spectral coefficients of the dealiased ``u . grad w``."""
        u, v = self.velocity(w_hat)
        w_x = self.spectral.derivative(w_hat, axis=1)
        w_y = self.spectral.derivative(w_hat, axis=0)
        return self.spectral.mask * self.spectral.forward(u * w_x + v * w_y)

    def nonlinear(self, w_hat: torch.Tensor) -> torch.Tensor:
        """Explicit part of the tendency: ``-u . grad w + F``."""
        out = -self.advection(w_hat)
        return out if self.forcing is None else out + self.forcing

    # ------------------------------------------------------------------ time stepping
    def cfl(self, w_hat: torch.Tensor, dt: float) -> float:
        """Advective CFL number ``dt (max|u| k_x,max + max|v| k_y,max)`` (retained modes)."""
        u, v = self.velocity(w_hat)
        ky, kx = self.spectral.max_k
        return float(dt * (u.abs().max() * kx + v.abs().max() * ky))


class VorticityProblem(EvolutionProblem):
    """Base of the periodic 2-D vorticity problems (Navier–Stokes, Kolmogorov flow).

    Subclasses set ``self.grf`` (the initial-vorticity field) and implement ``equation``
    and ``trajectory_fields``; the initial condition and the residual are shared.
    """

    def check_grid(self, grid: Grid) -> None:
        check_periodic_grid(grid, 2, self.name)

    def initial_condition(self, grid: Grid, generator: torch.Generator) -> torch.Tensor:
        return self.grf.sample(grid, 1, generator=generator, dtype=torch.float64)[0]

    def residual(self, fields, grid: Grid, interval: float | None = None) -> torch.Tensor:
        """Integrating-factor Crank–Nicolson residual of vorticity trajectories.

        Parameters
        ----------
        fields : torch.Tensor (B, T, 1, ny, nx) or mapping ``{"vorticity": (B, T, ny, nx)}``
            Vorticity at ``T >= 2`` equally spaced times.
        grid : Grid
            The periodic grid of the fields.
        interval : float, optional
            Time between frames (default ``final_time / steps``).

        Returns
        -------
        torch.Tensor (B, T - 1, ny, nx)
        """
        self.check_grid(grid)
        w = unpack_fields(fields, ("vorticity",), grid.ndim)["vorticity"]
        if w.ndim != 4 or w.shape[1] < 2:
            raise ValueError(
                f"vorticity of shape {tuple(w.shape)} is not a trajectory (B, T >= 2, ny, nx)"
            )
        equation = self.equation(grid, device=w.device, dtype=w.dtype)
        interval = self.interval if interval is None else check_positive("interval", interval)
        return equation.residual(w, interval)
