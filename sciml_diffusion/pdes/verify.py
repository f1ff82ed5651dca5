r"""Verification of the solvers against analytic solutions; the figures of ``docs/pdes.md``.

- Darcy, Poisson, Helmholtz: the manufactured solution :math:`u = \sin(\pi x)\sin(2\pi y)`
  (zero on the boundary of the unit square) with the matching source; the maximum nodal
  error on grids of 17, 33, 65, 129 nodes per axis and the observed orders
  :math:`\log_2(e_h / e_{h/2})`. Darcy uses the smooth coefficient :math:`a = 1 + x^2 + y`,
  Helmholtz :math:`k = 3`.
- Navier–Stokes: the Taylor–Green vortex :math:`w = 2k\sin(kx)\sin(ky)e^{-2\nu k^2 t}`,
  :math:`k = 2\pi`, relative L2 error at the saved times in :math:`[0, 1]` (float64).
- Burgers: the Cole–Hopf solution from :math:`u_0 = \sin 2\pi x + \tfrac12\cos 4\pi x`,
  relative max error over :math:`t \in [0, 0.5]` against a 8192-mode reference.
- Residuals: the largest residual of generated data (stored as float32) and of the same
  data with 1% multiplicative noise.

Run ``python -m sciml_diffusion.pdes.verify`` to print one JSON line per figure.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from sciml_diffusion.fields import Grid
from sciml_diffusion.pdes import get
from sciml_diffusion.pdes.base import single_thread
from sciml_diffusion.pdes.burgers import Burgers, cole_hopf
from sciml_diffusion.pdes.elliptic import solve_dirichlet
from sciml_diffusion.pdes.navier_stokes import NavierStokes

__all__ = [
    "manufactured_error",
    "convergence",
    "taylor_green_error",
    "cole_hopf_error",
    "residual_levels",
    "main",
]

RESOLUTIONS = (17, 33, 65, 129)


def _manufactured(grid: Grid):
    y, x = np.meshgrid(*grid.coords, indexing="ij")
    u = np.sin(np.pi * x) * np.sin(2 * np.pi * y)
    u_x = np.pi * np.cos(np.pi * x) * np.sin(2 * np.pi * y)
    u_y = 2 * np.pi * np.sin(np.pi * x) * np.cos(2 * np.pi * y)
    return x, y, u, u_x, u_y, -5 * np.pi**2 * u


def manufactured_error(problem: str, resolution: int) -> float:
    """Max nodal error of the discrete solution of a manufactured problem."""
    grid = Grid.regular((resolution, resolution))
    x, y, u, u_x, u_y, laplacian = _manufactured(grid)
    if problem == "darcy":
        a = 1 + x**2 + y
        numeric = solve_dirichlet(a, -(2 * x * u_x + u_y + a * laplacian), *grid.spacing)
    elif problem == "poisson":
        numeric = get("poisson").solve(-laplacian, grid)
    elif problem == "helmholtz":
        numeric = get("helmholtz", wavenumber=3.0).solve(laplacian + 9.0 * u, grid)
    else:
        raise ValueError(f"no manufactured solution for {problem!r}")
    return float(np.abs(numeric - u).max())


def convergence(problem: str, resolutions=RESOLUTIONS) -> dict:
    """Errors and observed orders of a manufactured problem under grid refinement."""
    errors = [manufactured_error(problem, n) for n in resolutions]
    orders = [math.log2(e0 / e1) for e0, e1 in zip(errors, errors[1:])]
    return {"resolutions": list(resolutions), "errors": errors, "orders": orders}


def taylor_green_error(viscosity=1e-2, resolution=32, dt=1e-2, steps=10) -> float:
    """Largest relative L2 error of the Taylor–Green vortex over the saved times in [0, 1]."""
    problem = NavierStokes(viscosity=viscosity, forcing=0.0, final_time=1.0, steps=steps, dt=dt)
    grid = problem.default_grid(resolution)
    k = 2 * math.pi
    y, x = grid.mesh(dtype=torch.float64)
    w0 = 2 * k * torch.sin(k * x) * torch.sin(k * y)
    frames = problem.solve(w0[None], grid)[0]
    errors = []
    for t, w in zip(problem.times, frames):
        exact = w0 * math.exp(-2 * viscosity * k**2 * t)
        errors.append(float((w - exact).norm() / exact.norm()))
    return max(errors)


def cole_hopf_error(viscosity=0.02, resolution=256, dt=5e-4) -> float:
    """Relative max error against Cole–Hopf over ``t`` in [0, 0.5]."""
    problem = Burgers(viscosity=viscosity, final_time=0.5, steps=5, dt=dt)
    grid = problem.default_grid(resolution)
    x = grid.coords[0]
    u0 = np.sin(2 * np.pi * x) + 0.5 * np.cos(4 * np.pi * x)
    fine = grid.with_shape(8192)
    xf = fine.coords[0]
    potential = (1 - np.cos(2 * np.pi * xf)) / (2 * np.pi) + np.sin(4 * np.pi * xf) / (8 * np.pi)
    exact = cole_hopf(potential, xf, problem.times, viscosity)[:, :: 8192 // resolution]
    numeric = problem.solve(torch.as_tensor(u0)[None], grid)[0].numpy()
    return float(np.abs(numeric - exact).max() / np.abs(exact).max())


def residual_levels(problem: str, resolution: int, samples=4, **parameters) -> dict:
    """Largest residual of generated data and of the data with 1% multiplicative noise."""
    pde = get(problem, **parameters)
    data = pde.generate(samples, resolution, seed=0)
    variables = [v for v in pde.variables if v.name not in ("w0", "wT")]
    fields = data.to_tensor([v.name for v in variables], dtype=torch.float64)
    is_solution = [1.0 if v.role == "solution" else 0.0 for v in variables]
    mask = torch.tensor(is_solution, dtype=fields.dtype).reshape(-1, *[1] * data.grid.ndim)
    noise = torch.randn(fields.shape, generator=torch.Generator().manual_seed(1))
    perturbed = fields * (1 + 0.01 * noise.to(fields) * mask)
    return {
        "residual_max": float(pde.residual(fields, data.grid).abs().max()),
        "perturbed_residual_max": float(pde.residual(perturbed, data.grid).abs().max()),
        "field_max": float(fields.abs().max()),
    }


def main() -> None:
    """Print the verification figures as JSON lines."""
    with single_thread():
        for name in ("darcy", "poisson", "helmholtz"):
            print(json.dumps({"check": "convergence", "problem": name, **convergence(name)}))
        for nu in (1e-2, 1e-3):
            error = taylor_green_error(viscosity=nu)
            print(json.dumps({"check": "taylor_green", "viscosity": nu, "max_rel_error": error}))
        for nu in (0.05, 0.02, 0.01):
            error = cole_hopf_error(viscosity=nu)
            print(json.dumps({"check": "cole_hopf", "viscosity": nu, "max_rel_error": error}))
        cases = (
            ("darcy", 64, {}),
            ("darcy", 128, {}),
            ("poisson", 64, {}),
            ("helmholtz", 64, {}),
            ("navier_stokes", 64, {}),
            ("burgers", 256, {"steps": 100}),
            ("kolmogorov", 64, {"spinup": 20.0, "final_time": 1.0, "steps": 100}),
        )
        for name, resolution, parameters in cases:
            levels = residual_levels(name, resolution, **parameters)
            line = {"check": "residual", "problem": name, "resolution": resolution}
            print(json.dumps({**line, "parameters": parameters, **levels}))


if __name__ == "__main__":
    main()
