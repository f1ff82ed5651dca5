"""``suggest_sensors``: where the next ``k`` sensors should go, given the ones placed.

Every check (criterion, ``k`` against the candidates, candidates inside the domain and on
the prior's variables, noise, ensemble size) runs before the posterior is sampled. Then
the posterior ensemble given the current sensors is sampled with
:func:`~sciml_diffusion.inverse.reconstruct` (or taken from ``ensemble=``, or, for a
:class:`~sciml_diffusion.diffusion.GaussianPrior` with ``exact=True``, replaced by the
closed-form posterior covariance), read at the candidates, and the criterion picks ``k``
of them (:mod:`~sciml_diffusion.inverse.design.selection`). The batch's expected
information gain is reported by every estimator of
:mod:`~sciml_diffusion.inverse.design.eig`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr

from sciml_diffusion import distributed
from sciml_diffusion.fields import Grid, Observations
from sciml_diffusion.inverse.design.candidates import Candidates, candidate_sensors
from sciml_diffusion.inverse.design.eig import ESTIMATORS, ensemble_eig, gaussian_eig
from sciml_diffusion.inverse.design.selection import CRITERIA, min_members, select
from sciml_diffusion.inverse.reconstruct import reconstruct, seed_of

__all__ = ["ProposedSensors", "suggest_sensors", "extend_observations"]


class ProposedSensors(Observations):
    """The proposed sensors: positions, the variable each reads, and why it was picked.

    An :class:`Observations` whose values ``(k, V)`` are NaN (readings still to be taken),
    with, per pick in the order picked, ``variable`` (what to read), ``value`` (the
    criterion when picked) and, for the whole batch, ``eig`` (estimator -> (nats, standard
    error)); ``candidates`` and ``scores`` hold the criterion of every candidate before the
    first pick (for maps).
    """

    def __init__(
        self, coords, variables, noise_std, axes, picked, criterion, value, eig, candidates, scores
    ):
        names = list(dict.fromkeys(picked))
        values = torch.full((len(picked), len(names)), float("nan"))
        super().__init__(coords, values, variables=names, noise_std=noise_std, axes=axes)
        self.variable = tuple(picked)
        self.criterion = criterion
        self.value = torch.as_tensor(value, dtype=torch.float64)
        self.eig = dict(eig)
        self.candidates: Candidates = candidates
        self.scores = scores

    def to_xarray(self) -> xr.Dataset:
        """The sensor file; the variable to read and the criterion per pick in attrs."""
        ds = super().to_xarray()
        ds.attrs.update(
            criterion=self.criterion,
            read=",".join(self.variable),
            criterion_value=self.value.numpy(),
            **{f"eig_{name}": np.array(pair) for name, pair in self.eig.items()},
        )
        return ds

    def __repr__(self) -> str:
        return f"ProposedSensors({len(self)} by {self.criterion}, reading {list(self.variable)})"


def suggest_sensors(
    prior,
    observations: Observations,
    k: int,
    criterion: str = "eig",
    candidates=None,
    members: int = 32,
    generator: int | torch.Generator | None = None,
    *,
    ensemble: xr.Dataset | None = None,
    exact: bool = False,
    estimator: str = "gaussian",
    noise_std: float | Mapping[str, float] | None = None,
    method: str = "mmps",
    progress: bool = False,
    sharded: bool = False,
    **reconstruct_options,
) -> ProposedSensors | None:
    """Propose ``k`` new sensors that learn the most about the fields.

    Parameters
    ----------
    prior : Prior or GaussianPrior
        The diffusion prior.
    observations : Observations
        The sensors already placed, with their readings (the posterior is conditioned on
        them).
    k : int
        Number of sensors to add.
    criterion : str
        ``eig`` (greedy expected information gain), ``greedy`` (largest predictive
        variance, re-conditioned between picks), ``variance`` (the ``k`` largest
        variances of one ensemble) or ``random``; see
        :mod:`~sciml_diffusion.inverse.design.selection`.
    candidates : None, Observations or bool array ``grid.shape``
        Admissible positions (default every grid node of the observed variables).
    members : int
        Posterior ensemble size when it is sampled here.
    generator : int or torch.Generator, optional
        Seed of the posterior sampling, of ``random`` and of the MC estimators.
    ensemble : xarray.Dataset, optional
        A :func:`reconstruct` result given these observations (not sampled again).
    exact : bool
        Use the closed-form posterior of a GaussianPrior (no sampling).
    estimator : str
        ``gaussian`` or ``pce``: how ``eig`` scores one more reading.
    noise_std : float or mapping variable -> float, optional
        Sensor noise std (physical units), overriding the observations'; also the noise
        of the new sensors.
    method, progress, **reconstruct_options
        Passed to :func:`reconstruct` (``steps``, ``iterations``, ``device``,
        ``batch_size``, ...).
    sharded : bool
        Sample the posterior ensemble (the expensive part) with its members split across
        the ranks of a ``torchrun`` process group; rank 0 gathers them, selects and
        returns the proposal (the same as one process's), the other ranks ``None``.

    Returns
    -------
    ProposedSensors or None
        ``k`` positions in the order picked, NaN values to fill in, the criterion per
        pick and the batch's EIG by each estimator.
    """
    _check_arguments(k, criterion, estimator, members, exact, prior)
    grid = prior.grid
    pool = candidate_sensors(grid, prior.variables, observations, candidates)
    if k > len(pool):
        raise ValueError(f"cannot add {k} sensors: only {len(pool)} candidate readings remain")
    std = _candidate_std(pool, observations, noise_std)
    if criterion in ("eig", "greedy") and not (std > 0).all():
        raise ValueError(
            f"the {criterion} criterion needs a positive sensor noise std; pass noise_std= "
            "(--noise-std), e.g. 1% of the field's spread"
        )
    _check_ensemble_size(criterion, k, members, ensemble, exact)
    seed = seed_of(generator)
    draws = torch.Generator().manual_seed(seed)
    if sharded and not distributed.is_main() and (ensemble is not None or exact):
        return None  # nothing to sample: rank 0 alone selects
    if criterion == "random" and ensemble is None and not exact:
        if sharded and not distributed.is_main():
            return None
        picks, values, first = select(
            torch.zeros(1, len(pool)), std**2, k, "random", None, generator=draws
        )
        return _proposal(pool, picks, std, criterion, values, {}, first, observations)
    mean, root, samples = _posterior_at(
        prior,
        observations,
        pool,
        grid,
        exact,
        ensemble,
        members,
        seed,
        noise_std,
        method,
        progress,
        {**reconstruct_options, "sharded": sharded},
    )
    if mean is None:  # not rank 0: its members went to rank 0
        return None
    picks, values, first = select(root, std**2, k, criterion, mean, estimator, draws)
    eig = _batch_eig(root, samples, picks, std, draws)
    return _proposal(pool, picks, std, criterion, values, eig, first, observations)


def extend_observations(observations: Observations, proposed: Observations, readings):
    """The placed sensors plus the proposed ones with their ``readings (k,)`` or ``(k, V)``.

    The result has the union of the variables, NaN where a sensor does not read one.
    """
    names = list(dict.fromkeys([*observations.variables, *proposed.variables]))
    readings = torch.as_tensor(readings, dtype=torch.float32)
    old = _widen(observations.values, observations.variables, names)
    if readings.ndim == 1:
        read = getattr(proposed, "variable", proposed.variables * len(proposed))
        new = torch.full((len(proposed), len(names)), float("nan"))
        new[torch.arange(len(proposed)), [names.index(v) for v in read]] = readings
    else:
        new = _widen(readings, proposed.variables, names)
    coords = np.concatenate([observations.coords, proposed.coords])
    return Observations(
        coords,
        torch.cat([old, new]),
        variables=names,
        noise_std=observations.noise_std,
        axes=observations.axes,
    )


def _widen(values, variables, names) -> torch.Tensor:
    out = torch.full((values.shape[-2], len(names)), float("nan"))
    out[:, [names.index(v) for v in variables]] = values.reshape(-1, len(variables)).float()
    return out


def _check_arguments(k, criterion, estimator, members, exact, prior) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (sensors to add) must be a positive integer, got {k!r}")
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    if estimator not in ESTIMATORS[:2]:
        raise ValueError(f"estimator must be gaussian or pce, got {estimator!r}")
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(f"members must be a positive integer, got {members!r}")
    if exact and not hasattr(prior, "field"):
        raise ValueError("exact=True needs a GaussianPrior (known covariance)")


def _check_ensemble_size(criterion, k, members, ensemble, exact) -> None:
    if exact:
        return
    have = int(ensemble.sizes["member"]) if ensemble is not None else members
    need = min_members(criterion, k)
    if have < need:
        raise ValueError(
            f"the {criterion} criterion for {k} sensors needs an ensemble of at least {need} "
            f"members, got {have}; raise members"
        )


def _candidate_std(pool: Candidates, observations: Observations, noise_std) -> torch.Tensor:
    if noise_std is None:
        noise_std = observations.noise_std
    if isinstance(noise_std, Mapping):
        missing = sorted({v for v in pool.variables if v not in noise_std})
        if missing:
            raise ValueError(f"noise_std gives no value for candidate variable(s) {missing}")
        stds = [float(noise_std[v]) for v in pool.variables]
    else:
        stds = [float(noise_std)] * len(pool)
    std = torch.tensor(stds, dtype=torch.float64)
    if not (torch.isfinite(std).all() and (std >= 0).all()):
        raise ValueError(f"noise std must be finite and >= 0, got {noise_std}")
    return std


def _posterior_at(
    prior,
    observations,
    pool,
    grid,
    exact,
    ensemble,
    members,
    seed,
    noise_std,
    method,
    progress,
    options,
):
    """Mean ``(N,)``, covariance root ``(R, N)`` and members ``(M, N)`` (or None) at the pool."""
    if exact:
        return (*_exact_at(prior, observations, pool, grid, noise_std), None)
    if ensemble is None:
        ensemble = reconstruct(
            prior,
            observations,
            method=method,
            members=members,
            generator=seed,
            noise_std=noise_std,
            progress=progress,
            **options,
        )
        if ensemble is None:
            return None, None, None
    fields = _ensemble_fields(ensemble, prior.variables, grid)
    samples = pool.read(fields, grid, prior.variables)  # (M, N)
    mean = samples.mean(0)
    root = (samples - mean) / np.sqrt(len(samples) - 1)
    return mean, root, samples


def _ensemble_fields(ensemble: xr.Dataset, variables, grid: Grid) -> torch.Tensor:
    missing = [v for v in variables if v not in ensemble]
    if missing:
        raise ValueError(f"the ensemble has no variable(s) {missing}")
    if "case" in ensemble.dims:
        raise ValueError("the ensemble holds several cases; pass one (ensemble.isel(case=c))")
    arrays = [ensemble[v].transpose("member", *grid.axes).values for v in variables]
    fields = torch.as_tensor(np.stack(arrays, axis=1), dtype=torch.float64)
    if tuple(fields.shape[2:]) != grid.shape:
        raise ValueError(f"the ensemble's grid {tuple(fields.shape[2:])} is not the prior's")
    return fields


def _exact_at(prior, observations, pool, grid, noise_std):
    from sciml_diffusion.inverse.gaussian import gaussian_posterior

    mean, _, cov = gaussian_posterior(prior, observations, noise_std=noise_std, covariance=True)
    unit = torch.tensor(prior.normalizer.std, dtype=torch.float64).repeat_interleave(grid.size)
    H = pool.matrix(grid, prior.variables) * unit  # (N, C N_grid) physical
    cov_c = H @ cov @ H.T
    values, vectors = torch.linalg.eigh(0.5 * (cov_c + cov_c.T))
    root = (vectors * values.clamp_min(0).sqrt()).T  # (N, N): root^T root = cov_c
    mean_c = pool.matrix(grid, prior.variables) @ mean.reshape(-1)
    return mean_c, root


def _batch_eig(root, samples, picks, std, generator) -> dict:
    """EIG of the picked batch under the law before any pick, by every estimator."""
    index = torch.as_tensor(picks)
    if not (std[index] > 0).all():
        return {}
    if samples is None:
        block = root[:, index]
        return {"exact": (float(gaussian_eig(block.T @ block, std[index])), 0.0)}
    if len(samples) < 3:
        return {}
    return {
        name: ensemble_eig(samples[:, index], std[index], name, draws=2, generator=generator)
        for name in ESTIMATORS
    }


def _proposal(pool, picks, std, criterion, values, eig, first, observations):
    chosen = pool.subset(picks)
    noise = float(std[picks].max()) if len(picks) else observations.noise_std
    return ProposedSensors(
        chosen.coords,
        None,
        noise,
        pool.axes,
        chosen.variables,
        criterion,
        values,
        eig,
        pool,
        first,
    )
