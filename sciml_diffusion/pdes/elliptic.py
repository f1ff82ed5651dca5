r"""Finite differences for :math:`-\nabla\cdot(a\nabla u) + c\,u = f`, u = 0 on the boundary.

Shared by the Darcy, Poisson and Helmholtz problems. On a node grid of a rectangle with
spacings :math:`h_y, h_x` (boundary nodes included) the operator at interior node
:math:`(i, j)` is the conservative five-point (finite-volume) stencil

.. math::

    (L u)_{ij} = -\frac{a_{i+1/2,j}(u_{i+1,j}-u_{ij}) - a_{i-1/2,j}(u_{ij}-u_{i-1,j})}{h_y^2}
                 -\frac{a_{i,j+1/2}(u_{i,j+1}-u_{ij}) - a_{i,j-1/2}(u_{ij}-u_{i,j-1})}{h_x^2}
                 + c_{ij} u_{ij},

with face coefficients the arithmetic mean of the two nodes, :math:`a_{i+1/2,j} =
(a_{ij} + a_{i+1,j})/2` (the choice of the FNO Darcy generator). The boundary values
are 0, so the unknowns are the interior nodes, ordered row by row. For smooth ``a`` the
scheme is second order in :math:`h`; with ``a = 1`` it is the standard five-point
Laplacian.

Two implementations of the same stencil: :func:`assemble` builds the sparse matrix
(``scipy.sparse``, vectorised) for the solve, :func:`apply_operator` applies it to batched
torch tensors (differentiable, any device) for residuals.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from sciml_diffusion.fields import Grid
from sciml_diffusion.fields.dataset import FieldDataset
from sciml_diffusion.pdes.base import (
    Problem,
    build_dataset,
    check_count,
    map_samples,
    resolve_grid,
    sample_generator,
)

__all__ = [
    "MIN_NODES",
    "assemble",
    "solve_dirichlet",
    "apply_operator",
    "check_bounded_grid",
    "laplacian_eigenvalues",
    "DirichletProblem",
]

#: fewest nodes per axis (boundary included) the five-point scheme accepts
MIN_NODES = 5


def check_bounded_grid(grid: Grid, problem: str) -> tuple[float, float]:
    """Check ``grid`` is a uniform, 2-D, non-periodic grid; return ``(h_y, h_x)``."""
    if not isinstance(grid, Grid):
        raise ValueError(f"{problem} needs a Grid, got {type(grid).__name__}")
    if grid.ndim != 2:
        raise ValueError(f"{problem} is posed in 2-D; got a {grid.ndim}-D grid {grid}")
    if any(grid.periodic):
        raise ValueError(
            f"{problem} has Dirichlet boundaries; pass a non-periodic grid, got {grid}"
        )
    if min(grid.shape) < MIN_NODES:
        raise ValueError(
            f"resolution {grid.shape} is too small for the five-point scheme: {problem} needs "
            f"at least {MIN_NODES} nodes per axis (boundary included)"
        )
    hy, hx = grid.spacing
    return hy, hx


def _face_means(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arithmetic means on the faces between rows ``(ny-1, nx)`` and columns ``(ny, nx-1)``."""
    return 0.5 * (a[1:, :] + a[:-1, :]), 0.5 * (a[:, 1:] + a[:, :-1])


def assemble(a: np.ndarray, hy: float, hx: float, c: float | np.ndarray = 0.0) -> sp.csc_matrix:
    """Sparse matrix of the operator on the interior nodes.

    Parameters
    ----------
    a : ndarray (ny, nx)
        Diffusion coefficient at every node (boundary included).
    hy, hx : float
        Node spacings.
    c : float or ndarray (ny, nx)
        Reaction coefficient (only its interior values are used).

    Returns
    -------
    scipy.sparse.csc_matrix of shape ``(m, m)``, ``m = (ny-2)(nx-2)``, rows in row-major
    order of the interior nodes.
    """
    a = np.asarray(a, dtype=np.float64)
    ny, nx = a.shape
    my, mx = ny - 2, nx - 2
    fy, fx = _face_means(a)
    south = fy[:-1, 1:-1] / hy**2  # face between rows i-1 and i, interior i
    north = fy[1:, 1:-1] / hy**2
    west = fx[1:-1, :-1] / hx**2
    east = fx[1:-1, 1:] / hx**2
    c_in = np.broadcast_to(np.asarray(c, dtype=np.float64), a.shape)[1:-1, 1:-1]
    index = np.arange(my * mx).reshape(my, mx)
    rows = [index.ravel()]
    cols = [index.ravel()]
    vals = [(south + north + west + east + c_in).ravel()]
    neighbours = (
        (north[:-1, :], index[:-1, :], index[1:, :]),
        (south[1:, :], index[1:, :], index[:-1, :]),
        (east[:, :-1], index[:, :-1], index[:, 1:]),
        (west[:, 1:], index[:, 1:], index[:, :-1]),
    )
    for coef, row, col in neighbours:
        rows.append(row.ravel())
        cols.append(col.ravel())
        vals.append(-coef.ravel())
    matrix = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(my * mx,) * 2
    )
    return matrix.tocsc()


def solve_dirichlet(
    a: np.ndarray, f: np.ndarray, hy: float, hx: float, c: float | np.ndarray = 0.0
) -> np.ndarray:
    """Solve ``-div(a grad u) + c u = f`` with ``u = 0`` on the boundary.

    Parameters
    ----------
    a, f : ndarray (ny, nx)
        Coefficient and right-hand side at every node (``f`` only at interior nodes).
    hy, hx : float
        Node spacings.
    c : float or ndarray (ny, nx)
        Reaction coefficient.

    Returns
    -------
    ndarray (ny, nx), float64: the solution with its zero boundary.
    """
    a = np.asarray(a, dtype=np.float64)
    f = np.broadcast_to(np.asarray(f, dtype=np.float64), a.shape)
    matrix = assemble(a, hy, hx, c)
    try:
        factor = spla.splu(matrix)
    except RuntimeError as error:
        raise ValueError(
            f"the discrete operator is singular ({error}); for Helmholtz move k^2 away from "
            "an eigenvalue of the discrete Laplacian"
        ) from error
    u = np.zeros_like(a)
    u[1:-1, 1:-1] = factor.solve(np.ascontiguousarray(f[1:-1, 1:-1]).ravel()).reshape(
        a.shape[0] - 2, a.shape[1] - 2
    )
    return u


def apply_operator(
    a: torch.Tensor | float, u: torch.Tensor, hy: float, hx: float, c=0.0
) -> torch.Tensor:
    """``-div(a grad u) + c u`` at the interior nodes of batched fields.

    Parameters
    ----------
    a : torch.Tensor (..., ny, nx) or float
        Diffusion coefficient at the nodes.
    u : torch.Tensor (..., ny, nx)
        Field at every node; its boundary values enter the stencil as they are.
    hy, hx : float
        Node spacings.
    c : float or torch.Tensor broadcastable to (..., ny-2, nx-2)
        Reaction coefficient at the interior nodes.

    Returns
    -------
    torch.Tensor (..., ny-2, nx-2)
    """
    a = torch.as_tensor(a, dtype=u.dtype, device=u.device).expand_as(u)
    ay = 0.5 * (a[..., 1:, :] + a[..., :-1, :])
    ax = 0.5 * (a[..., :, 1:] + a[..., :, :-1])
    flux_y = ay * (u[..., 1:, :] - u[..., :-1, :]) / hy  # (..., ny-1, nx)
    flux_x = ax * (u[..., :, 1:] - u[..., :, :-1]) / hx  # (..., ny, nx-1)
    div = (flux_y[..., 1:, 1:-1] - flux_y[..., :-1, 1:-1]) / hy + (
        flux_x[..., 1:-1, 1:] - flux_x[..., 1:-1, :-1]
    ) / hx
    return -div + c * u[..., 1:-1, 1:-1]


def laplacian_eigenvalues(grid: Grid) -> np.ndarray:
    """Eigenvalues ``(ny-2, nx-2)`` of the discrete ``-Laplacian`` with zero Dirichlet data."""
    (ny, nx), (hy, hx) = grid.shape, grid.spacing
    p = np.arange(1, ny - 1)[:, None]
    q = np.arange(1, nx - 1)[None, :]
    return (
        4 / hy**2 * np.sin(np.pi * p / (2 * (ny - 1))) ** 2
        + 4 / hx**2 * np.sin(np.pi * q / (2 * (nx - 1))) ** 2
    )


# ---------------------------------------------------------------------- problems
class DirichletProblem(Problem):
    """Common generator of the steady problems: one random input, one sparse solve each.

    A subclass draws its input field (:meth:`sample_input`) and turns it into the
    coefficients of ``-div(a grad u) + c u = rhs`` (:meth:`coefficients`); the solves run
    in ``workers`` processes.
    """

    input_name: str = ""

    def sample_input(self, grid: Grid, generator: torch.Generator) -> np.ndarray:
        """The input field ``(ny, nx)`` of one sample."""
        raise NotImplementedError

    def coefficients(self, field: np.ndarray) -> tuple:
        """``(a, c, rhs)`` of the sparse problem for one input field."""
        raise NotImplementedError

    def solve(self, field: np.ndarray, grid: Grid) -> np.ndarray:
        """The discrete solution ``(ny, nx)`` for one input field ``(ny, nx)`` on ``grid``."""
        hy, hx = check_bounded_grid(grid, self.name)
        field = np.asarray(field, dtype=np.float64)
        if field.shape != grid.shape:
            raise ValueError(f"input field of shape {field.shape} does not match {grid}")
        a, c, rhs = self.coefficients(field)
        return solve_dirichlet(a, rhs, hy, hx, c)

    def fixed_nodes(self, grid: Grid) -> dict[str, np.ndarray]:
        """``u`` is fixed (0) on the boundary nodes."""
        edge = np.zeros(grid.shape, dtype=bool)
        edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
        return {"u": edge}

    def default_grid(self, resolution: int) -> Grid:
        """The unit square with ``resolution`` nodes per axis, boundary nodes included."""
        return Grid.regular((resolution, resolution), lengths=1.0, periodic=False)

    def generate(
        self,
        n: int,
        grid: Grid | int,
        seed: int = 0,
        *,
        workers: int = 1,
        progress: bool = False,
    ) -> FieldDataset:
        """Generate ``n`` (input, solution) pairs.

        Parameters
        ----------
        n : int
            Number of samples.
        grid : Grid or int
            A 2-D non-periodic grid, or a resolution on the unit square.
        seed : int
            Sample ``i`` uses ``torch.Generator().manual_seed(seed + i)``.
        workers : int
            Processes for the sparse solves (the result does not depend on it).
        progress : bool
            Show a progress bar.

        Returns
        -------
        FieldDataset with variables ``(input, "u")``, each ``(sample, y, x)``.
        """
        n = check_count(n)
        grid = resolve_grid(self, grid)
        check_bounded_grid(grid, self.name)
        starts = list(range(0, n, CHUNK))
        counts = [min(CHUNK, n - start) for start in starts]
        tasks = [(self, grid, seed, start, count) for start, count in zip(starts, counts)]
        parts = map_samples(_solve_chunk, tasks, workers, progress, self.name, weights=counts)
        fields = {
            self.input_name: np.concatenate([inputs for inputs, _ in parts]),
            "u": np.concatenate([solutions for _, solutions in parts]),
        }
        return build_dataset(fields, self.variables, grid, self.recipe_attrs(seed, grid))


#: samples per task handed to a worker process
CHUNK = 16


def _solve_chunk(task: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and solutions (float32) of samples ``start .. start + count - 1``."""
    problem, grid, seed, start, count = task
    inputs, solutions = [], []
    for i in range(start, start + count):
        field = problem.sample_input(grid, sample_generator(seed, i))
        inputs.append(field.astype(np.float32))
        solutions.append(problem.solve(field, grid).astype(np.float32))
    return np.stack(inputs), np.stack(solutions)
