r"""Choosing ``k`` readings among candidates: one-shot, greedy with re-conditioning, random.

The current law of the candidate readings is held as a square root ``A (R, N)`` of its
covariance, :math:`\Sigma = A^\top A`: the scaled anomalies
:math:`A = (X - \bar X) / \sqrt{M - 1}` of an ``M``-member ensemble ``X (M, N)``, or an
exact factor of a known covariance. After a pick ``j`` with noise variance ``r``, the
ensemble is conditioned on the hypothetical reading by the deterministic square-root
ensemble Kalman update for one scalar observation (Whitaker & Hamill 2002),

.. math::
    A \leftarrow (I - \gamma\, c c^\top) A, \qquad c = A_{:, j}, \quad p = c^\top c, \quad
    \gamma = \frac{1 - \sqrt{r / (p + r)}}{p},

which gives exactly :math:`\Sigma - \Sigma_{:j}\Sigma_{j:}/(p + r)`, the posterior
covariance after the reading, whatever value it will show (the mean is not needed: for
a Gaussian law the covariance after a reading does not depend on its value). Members are
moved linearly, so for a non-Gaussian ensemble this is the linearised (ensemble Kalman)
re-conditioning, not a new posterior sample.

Criteria, each a score per candidate, the largest picked:

- ``variance``: predictive variance of the reading ``Σ_jj + r_j``, the ``k`` largest of the
  one ensemble (no re-conditioning: cheap, picks may cluster);
- ``greedy``: the same score, re-conditioning after each pick;
- ``eig``: the marginal information gain of one more reading, ``½ log(1 + Σ_jj / r_j)``
  (``estimator="gaussian"``) or its PCE estimate from the re-conditioned members
  (``"pce"``), re-conditioning after each pick. By the chain rule the gains of the picks
  add up to the batch's :math:`\mathrm{EIG}(S)`, so this is greedy D-optimal design
  (within ``1 - 1/e`` of the best batch: the Gaussian EIG is monotone submodular;
  Krause, Singh & Guestrin 2008). With one noise
  level for every candidate the Gaussian ``eig`` and ``greedy`` pick the same readings.
- ``random``: uniform without replacement (the baseline).
"""

from __future__ import annotations

import math

import torch

__all__ = ["CRITERIA", "select", "square_root_update", "min_members"]

#: the selection criteria
CRITERIA = ("eig", "greedy", "variance", "random")


def min_members(criterion: str, k: int) -> int:
    """Ensemble size a criterion needs for ``k`` picks.

    An ``M``-member ensemble spans ``M - 1`` directions; ``k`` re-conditioned picks need
    ``k`` of them and one more to rank the next pick, so ``eig`` and ``greedy`` need
    ``k + 2`` members; ``variance`` needs 2 (a spread), ``random`` none.
    """
    return {"eig": k + 2, "greedy": k + 2, "variance": 2, "random": 0}[criterion]


def square_root_update(root: torch.Tensor, j: int, noise_var: float) -> torch.Tensor:
    """Condition the covariance root ``(R, N)`` on a reading of candidate ``j``."""
    c = root[:, j]
    p = float(c @ c)
    if p <= 0:
        return root
    gamma = (1.0 - math.sqrt(noise_var / (p + noise_var))) / p
    return root - gamma * torch.outer(c, c @ root)


def select(
    root: torch.Tensor,
    noise_var: torch.Tensor,
    k: int,
    criterion: str,
    mean: torch.Tensor | None = None,
    estimator: str = "gaussian",
    generator: torch.Generator | None = None,
) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Pick ``k`` of ``N`` candidates.

    Parameters
    ----------
    root : tensor ``(R, N)``
        Square root of the covariance of the candidate readings.
    noise_var : tensor ``(N,)``
        Noise variance of each reading.
    k : int
        Number of picks.
    criterion : str
        One of :data:`CRITERIA`.
    mean : tensor ``(N,)``, optional
        Ensemble mean (members are ``mean + sqrt(R - 1) root``), needed for ``pce``.
    estimator : str
        ``gaussian`` or ``pce`` for ``eig``.
    generator : torch.Generator, optional
        Seeds ``random`` and the ``pce`` noise draws.

    Returns
    -------
    picks : list of int, values : tensor ``(k,)`` (the criterion of each pick when
    picked), first : tensor ``(N,)`` (the criterion of every candidate before any pick).
    """
    if criterion == "random":
        picks = torch.randperm(len(noise_var), generator=generator)[:k].tolist()
        return picks, torch.full((k,), float("nan")), torch.full_like(noise_var, float("nan"))
    root, noise_var = root.double(), noise_var.double()
    taken = torch.zeros(len(noise_var), dtype=torch.bool)
    picks, values, first = [], [], None
    for _ in range(k):
        score = _score(root, noise_var, criterion, mean, estimator, generator)
        first = score.clone() if first is None else first
        score = score.masked_fill(taken, float("-inf"))
        j = int(torch.argmax(score))
        picks.append(j)
        values.append(float(score[j]))
        taken[j] = True
        if criterion != "variance":
            root = square_root_update(root, j, float(noise_var[j]))
    return picks, torch.tensor(values, dtype=torch.float64), first


def _score(root, noise_var, criterion, mean, estimator, generator) -> torch.Tensor:
    variance = (root * root).sum(0)
    if criterion in ("variance", "greedy"):
        return variance + noise_var
    if estimator == "gaussian":
        return 0.5 * torch.log1p(variance / noise_var)
    if mean is None:
        raise ValueError("the pce estimator needs ensemble members, not a covariance")
    members = mean + math.sqrt(len(root) - 1) * root  # (M, N)
    return _marginal_pce(members, noise_var.sqrt(), generator)


def _marginal_pce(members: torch.Tensor, std: torch.Tensor, generator, draws: int = 4):
    """PCE estimate of the gain of each single reading: ``(N,)`` from members ``(M, N)``."""
    m = len(members)
    gain = torch.zeros(members.shape[1], dtype=torch.float64)
    for _ in range(draws):
        noise = torch.randn(members.shape, generator=generator, dtype=torch.float64)
        y = members + noise * std  # (M, N)
        for i in range(m):
            loglik = -0.5 * ((y[i] - members) / std) ** 2  # (M, N): p(y_i | x_l)
            evidence = torch.logsumexp(loglik, dim=0) - math.log(m)
            gain += (loglik[i] - evidence) / (draws * m)
    return gain
