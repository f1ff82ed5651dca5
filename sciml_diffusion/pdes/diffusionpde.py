r"""The data conventions of the DiffusionPDE / FunDPS benchmarks, reproduced.

DiffusionPDE (Huang et al. 2024, ``dataset_generation/``) generated the Darcy, Poisson,
Helmholtz and Navier–Stokes sets that FunDPS (Yao et al. 2025) reuses. Their choices differ
from ours in ways that change the data (see ``docs/pdes.md``); a problem built with
``convention="diffusionpde"`` reproduces them with the pieces of this module:

- :func:`cosine_grf`: their static-problem random field (``GRF.m``): an orthonormal
  inverse DCT-II of

  .. math:: L_{k} = n\,\sigma\,(\pi^2|k|^2 + \tau^2)^{-\alpha/2}\,\xi_k,
            \quad \xi_k \sim N(0, 1),\ k \in \{0..n-1\}^2,\ L_{0} = 0,

  with :math:`\sigma = \tau^{\alpha-1}` (their ``tau^(alpha-1)`` factor): the cosine
  (Neumann) modes of :math:`\sigma^2(-\Delta+\tau^2)^{-\alpha}` on :math:`[0,1]^2`, truncated
  at the grid's modes, without the constant mode, evaluated at the cell centres
  :math:`(i+\tfrac12)/n`. Its mean square over the grid is
  :math:`\sum_{k\ne0}\sigma^2(\pi^2|k|^2+\tau^2)^{-\alpha}` (:func:`cosine_grf_mean_square`),
  0.2921 for :math:`\alpha=2, \tau=3` at 128² (FunDPS measured 0.2919 on the Poisson set).
- :func:`spline_matrix`: MATLAB's ``interp2(..., 'spline')`` on a tensor grid, a not-a-knot
  cubic spline per axis with extrapolation, as a dense linear map, so the Darcy pipeline
  of ``solve_gwf.m`` (coefficient on cell centres → nodes, solve, pressure → cell centres)
  runs in NumPy for generation and in torch (differentiably, on any device) for residuals.
- :func:`cell_centred_grid`: the grid of that pipeline's output, ``n`` cell centres per
  axis of the unit square (no boundary points).

Their Navier–Stokes initial vorticity (``random_fields.py``) is the real part of a complex
Gaussian draw scaled by :math:`\sqrt2`: a zero-mean periodic field with spectrum
:math:`2\sigma^2(4\pi^2|k|^2+\tau^2)^{-\alpha}` on the grid's wavenumbers only; that is
:class:`~sciml_diffusion.fields.GaussianRandomField` with amplitude :math:`\sqrt2\sigma`,
``images=0`` and ``mean_zero=True`` (see :class:`~sciml_diffusion.pdes.NavierStokes`).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
import scipy.interpolate
import torch

from sciml_diffusion.fields import Grid

__all__ = [
    "CONVENTIONS",
    "check_convention",
    "cosine_grf",
    "cosine_grf_mean_square",
    "spline_matrix",
    "cell_centres",
    "cell_centred_grid",
    "is_cell_centred",
    "cell_node_matrices",
    "spline_resample",
]

#: the data conventions a benchmark problem accepts
CONVENTIONS = ("ours", "diffusionpde")


def check_convention(value: str) -> str:
    """Validate a convention name (``"ours"`` or ``"diffusionpde"``)."""
    key = str(value).strip().lower()
    if key not in CONVENTIONS:
        raise ValueError(f"unknown data convention {value!r}; choose one of {CONVENTIONS}")
    return key


def _cosine_amplitudes(shape, alpha: float, tau: float, sigma: float) -> np.ndarray:
    ky, kx = (np.arange(n, dtype=np.float64) for n in shape)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    coef = sigma * (np.pi**2 * k2 + tau**2) ** (-alpha / 2)
    coef[0, 0] = 0.0
    return coef


def cosine_grf(
    shape: tuple[int, int],
    alpha: float,
    tau: float,
    sigma: float,
    generator: torch.Generator,
) -> np.ndarray:
    """One draw of DiffusionPDE's ``GRF.m`` field, ``(ny, nx)`` float64.

    Parameters
    ----------
    shape : (int, int)
        Grid size ``(ny, nx)`` (their sets are 128 x 128).
    alpha, tau : float
        Exponent and inverse length of :math:`(\\pi^2|k|^2 + \\tau^2)^{-\\alpha/2}`.
    sigma : float
        Amplitude (theirs is ``tau**(alpha - 1)``).
    generator : torch.Generator
        Source of the standard normal coefficients.
    """
    xi = torch.randn(tuple(shape), generator=generator, dtype=torch.float64).numpy()
    scale = np.sqrt(shape[0] * shape[1])  # their `s` for a square grid
    coeffs = scale * _cosine_amplitudes(shape, alpha, tau, sigma) * xi
    return scipy.fft.idctn(coeffs, type=2, norm="ortho")


def cosine_grf_mean_square(
    shape: tuple[int, int], alpha: float, tau: float, sigma: float, zero_edges: bool = False
) -> float:
    """Expected mean over the grid of ``cosine_grf(...)**2`` (its pooled variance).

    With ``zero_edges`` the boundary rows and columns are set to 0 first (the Helmholtz
    source), and the mean is still over all ``ny * nx`` points.
    """
    ny, nx = shape
    var = (ny * nx) * _cosine_amplitudes(shape, alpha, tau, sigma) ** 2
    basis = [scipy.fft.idct(np.eye(n), type=2, norm="ortho", axis=0) for n in (ny, nx)]
    if zero_edges:  # sum of basis_k(i)^2 over the interior points i, per mode k
        weight = [(b[1:-1] ** 2).sum(axis=0) for b in basis]
    else:
        weight = [np.ones(n) for n in (ny, nx)]
    return float((var * weight[0][:, None] * weight[1][None, :]).sum() / (ny * nx))


def spline_matrix(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dense ``(len(target), len(source))`` not-a-knot cubic-spline interpolation matrix.

    Row ``i`` holds the weights of the source values at ``target[i]``; targets outside the
    source range are extrapolated by the end polynomials (MATLAB ``spline`` /
    ``interp2(..., 'spline')``).
    """
    source = np.asarray(source, dtype=np.float64)
    spline = scipy.interpolate.CubicSpline(
        source, np.eye(source.size), axis=0, bc_type="not-a-knot", extrapolate=True
    )
    return spline(np.asarray(target, dtype=np.float64))


def cell_centres(n: int, length: float = 1.0) -> np.ndarray:
    """The ``n`` cell centres ``(i + 1/2) length / n`` of ``[0, length]``."""
    return (np.arange(n, dtype=np.float64) + 0.5) * (length / n)


def cell_centred_grid(resolution: int) -> Grid:
    """The unit square's ``resolution x resolution`` cell centres (non-periodic grid)."""
    centres = cell_centres(int(resolution))
    return Grid([centres, centres], periodic=False)


def is_cell_centred(grid: Grid) -> bool:
    """Whether ``grid`` is :func:`cell_centred_grid` of its shape (uniform, unit square)."""
    return grid.ndim == 2 and all(
        np.allclose(c, cell_centres(c.size), rtol=0, atol=1e-9) for c in grid.coords
    )


@functools.lru_cache(maxsize=8)
def cell_node_matrices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Spline matrices ``(centres -> nodes, nodes -> centres)`` of one axis of ``n`` points.

    The centres are :func:`cell_centres` ``(n)``, the nodes ``linspace(0, 1, n)``; both
    matrices are ``(n, n)`` (read-only, cached).
    """
    centres, nodes = cell_centres(n), np.linspace(0.0, 1.0, n)
    matrices = spline_matrix(centres, nodes), spline_matrix(nodes, centres)
    for m in matrices:
        m.flags.writeable = False
    return matrices


def spline_resample(fields, matrices, dtype=None):
    """Apply per-axis interpolation matrices ``(P_y, P_x)`` to ``(..., ny, nx)`` fields.

    Works on NumPy arrays (returns float64) and on torch tensors (differentiable, on the
    tensor's device and in its dtype): ``out = P_y @ fields @ P_x^T``.
    """
    py, px = matrices
    if isinstance(fields, torch.Tensor):
        py = torch.tensor(np.array(py), dtype=fields.dtype, device=fields.device)
        px = torch.tensor(np.array(px), dtype=fields.dtype, device=fields.device)
        return py @ fields @ px.transpose(0, 1)
    fields = np.asarray(fields, dtype=dtype or np.float64)
    return py @ fields @ px.T
