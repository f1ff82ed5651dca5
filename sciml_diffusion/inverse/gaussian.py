r"""The closed-form posterior of a Gaussian-random-field prior under linear observations.

With prior :math:`x \sim \mathcal N(\mu, P)` (:class:`~sciml_diffusion.diffusion.GaussianPrior`,
``P`` block-diagonal over channels) and :math:`y = H x + \varepsilon`,
:math:`\varepsilon \sim \mathcal N(0, R)`, the posterior is Gaussian with

.. math::
    m = \mu + P H^\top G^{-1} (y - H\mu), \qquad
    \Sigma = P - P H^\top G^{-1} H P, \qquad G = H P H^\top + R.

This is the reference every guidance method is measured against: a correct posterior
sampler returns members with mean ``m`` and pointwise std ``sqrt(diag Sigma)``. ``H`` and
``P`` are formed densely (``K x CN`` and ``N x N``), so this is for grids up to a few
thousand nodes; ``G`` is inverted by an eigendecomposition, so noise-free sensors
(``R = 0``) are fine, including sensors on Dirichlet boundaries where ``P`` vanishes.
"""

from __future__ import annotations

import torch

from sciml_diffusion.fields import Grid, Observations
from sciml_diffusion.inverse.operators import Measurement, sensor_measurement

__all__ = ["gaussian_posterior"]

#: largest number of unknowns (channels x nodes) formed densely
MAX_UNKNOWNS = 8192


def gaussian_posterior(
    prior,
    observations: Observations | Measurement,
    grid: Grid | None = None,
    noise_std=None,
    case: int | None = None,
    covariance: bool = False,
):
    """Exact posterior mean and pointwise std of a :class:`GaussianPrior`.

    Parameters
    ----------
    prior : GaussianPrior
        Independent GRF channels with known covariance.
    observations : Observations or Measurement
        Point sensors (physical units), or a *linear* :class:`Measurement` on normalised
        fields with ``y`` of shape ``(K,)``.
    grid : Grid, optional
        Grid of the posterior (default the prior's).
    noise_std : float or mapping, optional
        Overrides the observations' noise std (as in :func:`reconstruct`).
    case : int, optional
        Which case of observations holding several.
    covariance : bool
        Also return the full posterior covariance ``(C N, C N)`` (nodes flattened in C order).

    Returns
    -------
    mean, std : torch.Tensor ``(C, *grid.shape)`` float64, physical units
        (and the covariance with ``covariance=True``).
    """
    if not hasattr(prior, "field"):
        raise ValueError("the closed-form posterior needs a GaussianPrior (known covariance)")
    grid = prior.check_grid(grid)
    if isinstance(observations, Observations):
        measurement = sensor_measurement(
            observations, grid, prior.variables, prior.normalizer, noise_std, case
        )
    else:
        measurement = observations
    if measurement.y.ndim != 1:
        raise ValueError("the closed-form posterior takes one case: y of shape (K,)")
    channels = len(prior.variables)
    unknowns = channels * grid.size
    if unknowns > MAX_UNKNOWNS:
        raise ValueError(
            f"{unknowns} unknowns is too many to form the covariance densely "
            f"(limit {MAX_UNKNOWNS}); use a coarser grid"
        )
    H = _dense_operator(measurement, channels, grid)  # (K, CN)
    P = _block_covariance(prior.field, grid, channels)  # (CN, CN)
    R = torch.diag(measurement.std.double() ** 2)
    PHt = P @ H.T
    G_inv = torch.linalg.pinv(H @ PHt + R, hermitian=True)
    mean = PHt @ (G_inv @ measurement.y.double())
    if covariance:
        cov = P - PHt @ G_inv @ PHt.T
    var = P.diagonal() - ((PHt @ G_inv) * PHt).sum(-1)
    shift = torch.tensor(prior.normalizer.mean, dtype=torch.float64)
    shape = (channels, *grid.shape)
    mean = mean.reshape(shape) + shift.reshape(-1, *([1] * grid.ndim))
    std = var.clamp_min(0).sqrt().reshape(shape)
    return (mean, std, cov) if covariance else (mean, std)


def _dense_operator(measurement: Measurement, channels: int, grid: Grid) -> torch.Tensor:
    """The matrix of a linear measurement, ``(K, C N)``, by applying it to unit fields."""
    unknowns = channels * grid.size
    basis = torch.eye(unknowns, dtype=torch.float64).reshape(unknowns, channels, *grid.shape)
    with torch.no_grad():
        columns = measurement(basis)  # (CN, K)
    return columns.double().T


def _block_covariance(field, grid: Grid, channels: int) -> torch.Tensor:
    """Node covariance of independent channels: ``(C N, C N)`` block diagonal."""
    eye = torch.eye(grid.size, dtype=torch.float64).reshape(grid.size, *grid.shape)
    block = field.apply_covariance(eye, grid).reshape(grid.size, grid.size)
    return torch.block_diag(*([block] * channels))
