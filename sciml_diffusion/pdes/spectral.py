r"""Fourier pseudo-spectral tools on periodic grids, and the Lawson RK4 time stepper.

Shared by the Navier–Stokes, Kolmogorov and Burgers problems. A real field on a periodic
grid of lengths :math:`L_d` is held by its ``torch.fft.rfftn`` coefficients over the last
``ndim`` dims (the last axis halved). Wavenumbers are :math:`k = 2\pi m / L`.

- First derivatives multiply by :math:`i k`, with the Nyquist wavenumber of an even-sized
  axis set to 0 (its sign is ambiguous for a real field).
- Products are dealiased by the 2/3 rule: modes with :math:`|m| > \lfloor (n-1)/3 \rfloor`
  on any axis are removed from the transform of a product (Orszag 1971).

Time stepping for :math:`\partial_t \hat w = \Lambda \hat w + N(\hat w)` with a diagonal
stiff part :math:`\Lambda` (diffusion, drag) is the integrating-factor ("Lawson")
fourth-order Runge–Kutta method (Lawson 1967; Cox & Matthews 2002, sec. 2): the linear
part is integrated exactly by :math:`E = e^{\Lambda\,\delta t}`, the nonlinear part by
classical RK4. With :math:`E_{1/2} = e^{\Lambda\,\delta t/2}`

.. math::

    a &= N(\hat w), \quad b = N(E_{1/2}(\hat w + \tfrac{\delta t}{2} a)), \quad
    c = N(E_{1/2}\hat w + \tfrac{\delta t}{2} b), \quad
    d = N(E\hat w + \delta t\, E_{1/2} c), \\
    \hat w^{+} &= E\hat w + \tfrac{\delta t}{6}\,(E a + 2E_{1/2}(b + c) + d).

Only decaying exponentials appear, so the scheme is stable for any viscosity; the
explicit part is stable for advective CFL numbers up to :math:`2\sqrt{2}` (the reach of
RK4 on the imaginary axis).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from sciml_diffusion.fields import Grid

__all__ = [
    "RK4_IMAGINARY_LIMIT",
    "SemilinearEquation",
    "SpectralGrid",
    "lawson_rk4_step",
    "check_periodic_grid",
    "steps_per_interval",
]

#: largest |dt * lambda| on the imaginary axis for which classical RK4 is stable
RK4_IMAGINARY_LIMIT = 2 * math.sqrt(2)

#: fewest nodes per periodic axis the pseudo-spectral problems accept
MIN_SPECTRAL_NODES = 8


def check_periodic_grid(grid: Grid, ndim: int, problem: str) -> None:
    """Check ``grid`` is a uniform, ``ndim``-D, fully periodic grid of enough nodes."""
    if not isinstance(grid, Grid):
        raise ValueError(f"{problem} needs a Grid, got {type(grid).__name__}")
    if grid.ndim != ndim:
        raise ValueError(f"{problem} is posed in {ndim}-D; got a {grid.ndim}-D grid {grid}")
    if not all(grid.periodic):
        raise ValueError(f"{problem} is periodic; pass a periodic grid, got {grid}")
    if min(grid.shape) < MIN_SPECTRAL_NODES:
        raise ValueError(
            f"resolution {grid.shape} is too small for the pseudo-spectral scheme: {problem} "
            f"needs at least {MIN_SPECTRAL_NODES} nodes per axis"
        )
    _ = grid.spacing  # raises for a non-uniform axis


def steps_per_interval(interval: float, dt: float) -> tuple[int, float]:
    """Whole number of steps of size <= ``dt`` covering ``interval``, and the step used."""
    count = max(1, math.ceil(interval / dt - 1e-9))
    return count, interval / count


class SpectralGrid:
    """Wavenumbers, derivative symbols and the dealiasing mask of a periodic grid.

    Parameters
    ----------
    grid : Grid
        Periodic, uniform grid; the transform acts on its ``grid.ndim`` trailing dims.
    device, dtype
        Where and in which real precision the symbols live.

    Attributes
    ----------
    k : list of torch.Tensor
        Per axis, the wavenumbers ``2 pi m / L`` shaped to broadcast against the
        ``rfftn`` coefficients ``(..., n_0, ..., n_{d-1} // 2 + 1)``.
    ik : list of torch.Tensor
        ``i k`` for first derivatives (Nyquist set to 0).
    k2 : torch.Tensor
        ``|k|^2`` (the symbol of ``-Laplacian``).
    mask : torch.Tensor
        1 on the modes kept by the 2/3 rule, 0 elsewhere.
    """

    def __init__(self, grid: Grid, device=None, dtype=torch.float64):
        self.grid = grid
        self.shape = grid.shape
        self.ndim = grid.ndim
        self.dims = tuple(range(-grid.ndim, 0))
        self.k, self.ik, masks = [], [], []
        for axis, (n, length) in enumerate(zip(grid.shape, grid.lengths)):
            last = axis == grid.ndim - 1
            m = torch.fft.rfftfreq(n, 1.0 / n) if last else torch.fft.fftfreq(n, 1.0 / n)
            m = m.to(device=device, dtype=dtype)
            shape = [1] * grid.ndim
            shape[axis] = -1
            k = (2 * math.pi / length * m).reshape(shape)
            derivative = torch.where(m.abs() == n / 2, 0.0, k.reshape(-1)).reshape(shape)
            self.k.append(k)
            self.ik.append(1j * derivative)
            masks.append((m.abs() <= (n - 1) // 3).reshape(shape))
        self.k2 = sum(k**2 for k in self.k)
        mask = masks[0]
        for other in masks[1:]:
            mask = mask & other
        self.mask = mask.to(dtype)
        self.max_k = [
            2 * math.pi / length * ((n - 1) // 3) for n, length in zip(self.shape, grid.lengths)
        ]

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        """Real field ``(..., *shape)`` to its ``rfftn`` coefficients."""
        return torch.fft.rfftn(field, dim=self.dims)

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        """``rfftn`` coefficients back to the real field ``(..., *shape)``."""
        return torch.fft.irfftn(coeffs, s=self.shape, dim=self.dims)

    def derivative(self, coeffs: torch.Tensor, axis: int) -> torch.Tensor:
        """Physical-space derivative along grid axis ``axis`` of a field given by coefficients."""
        return self.inverse(self.ik[axis] * coeffs)


def lawson_rk4_step(
    state: torch.Tensor,
    nonlinear: Callable[[torch.Tensor], torch.Tensor],
    decay: torch.Tensor,
    decay_half: torch.Tensor,
    dt: float,
) -> torch.Tensor:
    """One integrating-factor RK4 step of ``d state/dt = Lambda state + N(state)``.

    Parameters
    ----------
    state : torch.Tensor (complex)
        Spectral coefficients.
    nonlinear : callable
        ``N``, mapping coefficients to coefficients of the same shape.
    decay, decay_half : torch.Tensor
        ``exp(Lambda dt)`` and ``exp(Lambda dt / 2)``, broadcastable against ``state``.
    dt : float
        Step size.
    """
    a = nonlinear(state)
    b = nonlinear(decay_half * (state + 0.5 * dt * a))
    c = nonlinear(decay_half * state + 0.5 * dt * b)
    d = nonlinear(decay * state + dt * decay_half * c)
    return decay * state + (dt / 6) * (decay * a + 2 * decay_half * (b + c) + d)


class SemilinearEquation:
    r"""Base of pseudo-spectral equations :math:`\partial_t\hat w = \Lambda\hat w + N(\hat w)`.

    Subclasses set ``self.spectral`` (a :class:`SpectralGrid`), ``self.linear`` (the
    diagonal :math:`\Lambda`, broadcastable to the coefficients), and implement
    ``nonlinear(w_hat)`` and ``cfl(w_hat, dt)``. This class gives the transforms, the
    Lawson-RK4 time stepping with its checks, and the residual of a trajectory.
    """

    spectral: SpectralGrid
    linear: torch.Tensor
    #: what the field is called in error messages
    field_name = "solution"

    def forward(self, field: torch.Tensor) -> torch.Tensor:
        """Field ``(..., *grid.shape)`` to spectral coefficients."""
        return self.spectral.forward(field)

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Spectral coefficients back to the field ``(..., *grid.shape)``."""
        return self.spectral.inverse(coeffs)

    def nonlinear(self, coeffs: torch.Tensor) -> torch.Tensor:
        r"""Explicit part :math:`N(\hat w)` of the tendency."""
        raise NotImplementedError

    def cfl(self, coeffs: torch.Tensor, dt: float) -> float:
        """Advective CFL number of a step ``dt`` from ``coeffs``."""
        raise NotImplementedError

    def check_cfl(self, coeffs: torch.Tensor, dt: float) -> None:
        """Refuse a step whose CFL number exceeds the RK4 stability limit."""
        number = self.cfl(coeffs, dt)
        if number > RK4_IMAGINARY_LIMIT:
            raise ValueError(
                f"time step dt={dt:.4g} violates the CFL condition: advective CFL number "
                f"{number:.3g} exceeds the RK4 limit {RK4_IMAGINARY_LIMIT:.3g}; use dt <= "
                f"{dt * RK4_IMAGINARY_LIMIT / number:.3g}"
            )

    def advance(self, coeffs: torch.Tensor, dt: float, steps: int, t0: float = 0.0):
        """``steps`` Lawson-RK4 steps of size ``dt`` from time ``t0``; checks at the end."""
        decay = torch.exp(self.linear * dt)
        decay_half = torch.exp(self.linear * (0.5 * dt))
        for _ in range(steps):
            coeffs = lawson_rk4_step(coeffs, self.nonlinear, decay, decay_half, dt)
        t1 = t0 + steps * dt
        if not torch.isfinite(torch.view_as_real(coeffs)).all():
            raise ValueError(
                f"the {self.field_name} became non-finite between t={t0:.4g} and t={t1:.4g}; "
                f"lower the time step dt={dt:.4g}"
            )
        number = self.cfl(coeffs, dt)
        if number > RK4_IMAGINARY_LIMIT:
            warnings.warn(
                f"advective CFL number {number:.3g} at t={t1:.4g} exceeds the RK4 limit "
                f"{RK4_IMAGINARY_LIMIT:.3g} with dt={dt:.4g}; lower dt",
                RuntimeWarning,
                stacklevel=2,
            )
        return coeffs

    def residual(self, trajectory: torch.Tensor, interval: float) -> torch.Tensor:
        r"""Integrating-factor Crank–Nicolson residual of a trajectory.

        With :math:`E = e^{\Lambda \Delta t}` between consecutive frames,
        :math:`r = (\hat w_{1} - E \hat w_0)/\Delta t - \tfrac12 (N(\hat w_1) + E N(\hat w_0))`,
        transformed back to the grid; zero for an exact solution up to O(Δt²).

        Parameters
        ----------
        trajectory : torch.Tensor (B, T, *grid.shape)
            The field at ``T >= 2`` equally spaced times.
        interval : float
            Time between consecutive frames.

        Returns
        -------
        torch.Tensor (B, T - 1, *grid.shape)
        """
        coeffs = self.forward(trajectory)
        first, second = coeffs[:, :-1], coeffs[:, 1:]
        decay = torch.exp(self.linear * interval)
        tendency = (second - decay * first) / interval
        explicit = 0.5 * (self.nonlinear(second) + decay * self.nonlinear(first))
        return self.inverse(tendency - explicit)
