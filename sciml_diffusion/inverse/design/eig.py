r"""Expected information gain of a batch of point readings, exact and from an ensemble.

For readings :math:`y = x_S + \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, D)`,
``D = diag(s^2)``, of a field whose current (posterior) law has covariance :math:`\Sigma`
at the sensor set ``S``, the expected information gain is the mutual information

.. math::
    \mathrm{EIG}(S) = I(y; x) = \mathbb E_{x, y}\big[\log p(y \mid x) - \log p(y)\big],

which for a Gaussian law is :math:`\tfrac12 \log\det(I + D^{-1/2} \Sigma_S D^{-1/2})`
(Lindley 1956; the D-optimal criterion). From ``M`` ensemble members ``x_m`` three
estimators are offered, each with its standard error:

- ``gaussian``: the closed form with the ensemble covariance (``ddof=1``) in place of
  :math:`\Sigma_S`; consistent, biased low for finite ``M`` (``log det(I + S)`` is concave
  in the sample covariance ``S``; the bias is at most of order ``K^2 / M``), blind to
  non-Gaussian structure; standard error by the delete-a-group jackknife over members.
- ``pce``: prior contrastive estimation (Foster et al. 2020, "A unified stochastic gradient
  approach to designing Bayesian-optimal experiments"): draw ``y_m = x_m + \varepsilon_m``
  and contrast :math:`\log p(y_m \mid x_m)` with
  :math:`\log \frac1M \sum_{l} p(y_m \mid x_l)`, the member itself included. Does not assume
  Gaussianity; a *lower* bound in expectation, ``E[pce] <= EIG``, never above ``log M``,
  with bias ``O(1/M)`` once ``M >> exp(EIG)``.
- ``nmc``: nested Monte Carlo (Ryan 2003; Rainforth et al. 2018) with the other ``M - 1``
  members as inner samples: an *upper* bound in expectation, bias ``O(1/M)``.

``pce`` and ``nmc`` bracket the EIG; their gap is the sampling bias for this ensemble size.
"""

from __future__ import annotations

import math

import torch

__all__ = ["ESTIMATORS", "gaussian_eig", "ensemble_eig"]

#: names of the ensemble estimators of :func:`ensemble_eig`
ESTIMATORS = ("gaussian", "pce", "nmc")


def gaussian_eig(covariance: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    r"""``½ log det(I + D^{-1/2} Σ D^{-1/2})``: ``covariance (K, K)``, noise ``std (K,) > 0``."""
    std = torch.as_tensor(std, dtype=torch.float64)
    scaled = covariance.double() / (std[:, None] * std[None, :])
    eye = torch.eye(len(std), dtype=torch.float64)
    return 0.5 * torch.linalg.slogdet(eye + scaled)[1]


def ensemble_eig(
    samples: torch.Tensor,
    std,
    estimator: str = "gaussian",
    draws: int = 8,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """The EIG of readings of ``samples (M, K)`` (members at ``K`` sensors) with noise ``std``.

    Parameters
    ----------
    samples : tensor ``(M, K)``
        Ensemble members read at the sensors (physical units), ``M >= 2``.
    std : float or tensor ``(K,)``
        Noise std of each reading (> 0), same units.
    estimator : str
        ``gaussian``, ``pce`` (lower bound) or ``nmc`` (upper bound); see the module doc.
    draws : int
        Noise draws per member for ``pce`` and ``nmc``.
    generator : torch.Generator, optional
        Seeds the noise draws.

    Returns
    -------
    estimate, standard_error : float
        In nats.
    """
    samples = samples.double()
    members, k = samples.shape
    std = torch.as_tensor(std, dtype=torch.float64).expand(k)
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown EIG estimator {estimator!r}; choose one of {ESTIMATORS}")
    if members < 3:
        raise ValueError(f"an EIG estimate needs at least 3 members, got {members}")
    if not (std > 0).all():
        raise ValueError("the EIG needs a positive noise std on every reading")
    if estimator == "gaussian":
        return _gaussian_jackknife(samples, std)
    terms = _contrastive_terms(samples, std, estimator, draws, generator)  # (M,)
    return float(terms.mean()), float(terms.std() / math.sqrt(members))


def _gaussian_jackknife(samples: torch.Tensor, std: torch.Tensor) -> tuple[float, float]:
    """The estimate and its delete-a-group jackknife standard error (up to 32 groups)."""
    members, k = samples.shape
    full = float(gaussian_eig(torch.cov(samples.T).reshape(k, k), std))
    groups = torch.arange(members) % min(members, 32)
    count = int(groups.max()) + 1
    leave = torch.stack(
        [gaussian_eig(torch.cov(samples[groups != g].T).reshape(k, k), std) for g in range(count)]
    )
    error = math.sqrt((count - 1) / count * float(((leave - leave.mean()) ** 2).sum()))
    return full, error


def _contrastive_terms(samples, std, estimator, draws, generator, chunk=256) -> torch.Tensor:
    """Per member, the mean over noise draws of ``log p(y|x_m) - log p̂(y)``."""
    members = len(samples)
    terms = torch.zeros(members, dtype=torch.float64)
    for _ in range(draws):
        noise = torch.randn(samples.shape, generator=generator, dtype=torch.float64)
        y = samples + noise * std  # (M, K)
        for first in range(0, members, chunk):
            rows = torch.arange(first, min(first + chunk, members))
            # log p(y_m | x_l) up to a constant shared by every term: (rows, M)
            loglik = -0.5 * (((y[rows, None, :] - samples[None]) / std) ** 2).sum(-1)
            own = loglik[torch.arange(len(rows)), rows]
            if estimator == "pce":
                evidence = torch.logsumexp(loglik, dim=-1) - math.log(members)
            else:
                others = loglik.clone()
                others[torch.arange(len(rows)), rows] = float("-inf")
                evidence = torch.logsumexp(others, dim=-1) - math.log(members - 1)
            terms[rows] += (own - evidence) / draws
    return terms
