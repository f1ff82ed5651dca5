r"""Scores for fields and ensembles: relative L2, CRPS, spread-skill, rank histogram, spectra.

- Relative L2 error :math:`\|\hat x - x\|_2 / \|x\|_2` per sample.
- CRPS of an ensemble (Gneiting & Raftery 2007), computed by ``scoringrules``:
  :math:`\mathrm{CRPS}(F, y) = E|X - y| - \tfrac12 E|X - X'|`, fair (unbiased) estimator by
  default.
- Spread-skill: the ensemble spread (mean member variance, corrected by ``(M+1)/M``) and
  the skill (MSE of the ensemble mean); a calibrated ensemble has ratio ~ 1
  (Fortin et al. 2014).
- Rank histogram (Talagrand): where the truth falls among the sorted members; flat when
  calibrated.
- Radially averaged power spectrum of periodic 2-D fields.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "relative_l2",
    "crps_ensemble",
    "spread_skill",
    "rank_histogram",
    "radial_power_spectrum",
]


def relative_l2(prediction: torch.Tensor, target: torch.Tensor, ndim: int) -> torch.Tensor:
    """Relative L2 error over the last ``ndim`` dims: ``(...)`` from ``(..., *spatial)``."""
    dims = tuple(range(-ndim, 0))
    return (prediction - target).square().sum(dims).sqrt() / target.square().sum(dims).sqrt()


def crps_ensemble(ensemble, observation, member_dim: int = 0, fair: bool = True):
    """CRPS of an ensemble against observations, elementwise.

    Parameters
    ----------
    ensemble : array ``(..., M, ...)``
        Members along ``member_dim``.
    observation : array
        Shaped like ``ensemble`` without ``member_dim``.
    fair : bool
        The fair (unbiased in M) estimator; otherwise the plain ensemble estimator.

    Returns
    -------
    numpy array of the observation's shape.
    """
    import scoringrules as sr

    ens = np.moveaxis(np.asarray(_numpy(ensemble), dtype=np.float64), member_dim, -1)
    obs = np.asarray(_numpy(observation), dtype=np.float64)
    if ens.shape[:-1] != obs.shape:
        raise ValueError(
            f"ensemble of shape {ens.shape} (members last) does not match observation "
            f"shape {obs.shape}"
        )
    # O(M log M) sorted forms: "pwm" equals the fair estimator, "qd" the plain energy form
    estimator = "pwm" if fair else "qd"
    return np.asarray(sr.crps_ensemble(obs, ens, m_axis=-1, estimator=estimator))


def spread_skill(ensemble, observation, member_dim: int = 0) -> dict:
    """Ensemble spread, skill (RMSE of the mean) and their ratio, over all elements."""
    ens = np.moveaxis(np.asarray(_numpy(ensemble), dtype=np.float64), member_dim, 0)
    obs = np.asarray(_numpy(observation), dtype=np.float64)
    m = ens.shape[0]
    if m < 2:
        raise ValueError("spread-skill needs at least 2 members")
    skill = np.sqrt(np.mean((ens.mean(0) - obs) ** 2))
    spread = np.sqrt(np.mean(ens.var(0, ddof=1)) * (m + 1) / m)
    return {"spread": float(spread), "skill": float(skill), "ratio": float(spread / skill)}


def rank_histogram(ensemble, observation, member_dim: int = 0) -> np.ndarray:
    """Counts of the rank of the observation among the ``M`` members: ``(M + 1,)``."""
    ens = np.moveaxis(np.asarray(_numpy(ensemble), dtype=np.float64), member_dim, 0)
    obs = np.asarray(_numpy(observation), dtype=np.float64)
    ranks = (ens < obs[None]).sum(0).reshape(-1)
    return np.bincount(ranks, minlength=ens.shape[0] + 1)


def radial_power_spectrum(fields: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of 2-D fields ``(..., ny, nx)``.

    Returns
    -------
    wavenumbers : ``(K,)`` integer shell radii ``0..min(ny, nx)//2``
    power : ``(K,)`` mean power per shell, averaged over the leading dims.
    """
    fields = torch.as_tensor(fields, dtype=torch.float64)
    ny, nx = fields.shape[-2:]
    power = torch.fft.fft2(fields, norm="ortho").abs().square()
    power = power.reshape(-1, ny, nx).mean(0).numpy()
    ky = np.fft.fftfreq(ny) * ny
    kx = np.fft.fftfreq(nx) * nx
    radius = np.rint(np.hypot(*np.meshgrid(ky, kx, indexing="ij"))).astype(int)
    kmax = min(ny, nx) // 2
    shells = np.arange(kmax + 1)
    totals = np.bincount(radius.ravel(), weights=power.ravel(), minlength=kmax + 1)
    counts = np.bincount(radius.ravel(), minlength=kmax + 1)
    return shells, totals[: kmax + 1] / np.maximum(counts[: kmax + 1], 1)


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
