"""One evaluation for every latent SDE, however it was trained.

- **Test NELBO**: ``KL(q(z_t0) || p(z_t0)) + path KL - sum_i log p(x_i | z_ti)`` from an Itô
  Euler-Maruyama solve (``logqp=True``) of the model's posterior SDE -- the drift network,
  or for SDE-matching models the drift implied by their marginals -- averaged over
  ``members`` paths, in the data's own units (the normaliser's Jacobian is included).
  For SDE-matching models the simulation-free estimate of the same continuous-time NELBO
  (the matching loss with 64 random times per sequence) is reported as well: their implied
  posterior drift has a term ``-1/2 g^2 (z - mu) / sigma^2`` that is stiff where the
  posterior is sharp, so the solver estimate needs a small ``dt`` to agree with it.
- **Forecast**: ``M`` members start from the posterior at each sequence's own last observed
  time and follow the prior SDE; each member is decoded with observation noise. The start
  is drawn from the encoder's marginal ``N(mu(t_end), sigma(t_end)^2)`` for SDE-matching
  models (no solve) or from a posterior-SDE solve over the window for drift models.
  Sequences may start and end at different times. Scores: MSE of the ensemble mean and
  CRPS (:func:`sciml_diffusion.metrics.crps_ensemble`; the fair estimator by default,
  ``fair=False`` for the plain one) against the held-back future.
- **Interpolation**: MSE of the posterior mean, decoded, at held-out times inside the window
  (the encoder does not see them).
- **OU parameters**: for a one-dimensional model, the learned prior mapped into data space
  through the affine decoder, ``dx = A f((x - B) / A) dt + |A| g dW``, and fitted by least
  squares to ``theta (mu - x)`` and a constant ``sigma``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchsde

from sciml_diffusion.metrics import crps_ensemble
from sciml_diffusion.sde.baselines import (
    PriorSDE,
    gather_slots,
    observation_grid,
    relative_times,
    solve_posterior,
)
from sciml_diffusion.sde.brownian import MemberBrownian, member_rows
from sciml_diffusion.sde.latent import LatentSDE
from sciml_diffusion.sde.matching import sde_matching_loss
from sciml_diffusion.sde.series import ChannelNormalizer, ObservedSeries

__all__ = [
    "Evaluation",
    "PosteriorPaths",
    "posterior_paths",
    "marginal_at_end",
    "forecast_from_states",
    "forecast_from_paths",
    "forecast",
    "evaluate",
    "fit_ou_drift",
    "ou_parameters",
]


@dataclass(frozen=True)
class Evaluation:
    """Scores averaged over the test sequences (data units). NaN where not asked for."""

    nelbo: float
    nelbo_per_value: float
    forecast_mse: float
    forecast_crps: float
    interpolation_mse: float
    nelbo_simulation_free: float = math.nan

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PosteriorPaths:
    """Posterior paths of ``B`` sequences, ``M`` members each (rows ``b * M + m``).

    Attributes
    ----------
    grid : ``(G,)`` solver output times
    zs : ``(G, B * M, D)`` latent states
    nelbo : ``(B,)`` NELBO per sequence (normalised units), member mean
    at_end : ``(B * M, D)`` state at each sequence's last observed time
    """

    grid: torch.Tensor
    zs: torch.Tensor
    nelbo: torch.Tensor
    at_end: torch.Tensor
    members: int


def posterior_paths(
    model: LatentSDE,
    series: ObservedSeries,
    members: int = 8,
    dt: float = 1e-2,
    seed: int = 0,
    extra_times: torch.Tensor | None = None,
    member_streams=None,
) -> PosteriorPaths:
    """Solve the posterior SDE of ``series`` (normalised) for ``members`` paths each.

    Sequences may start at different times: the solve runs on times relative to each
    sequence's start (``grid`` is relative). ``extra_times`` (any shape, relative to the
    starts) are added to the output grid (held-out times). ``member_streams`` (a stream name
    -> one generator per row, :func:`~sciml_diffusion.sde.brownian.member_rows`) draws each
    row's start and path from its own generators (Itô Euler, :class:`MemberBrownian`)
    instead of one ``BrownianInterval`` from ``seed`` for the batch.
    """
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        encoded = model.encode(series).repeat(members)
        relative, start = relative_times(series)
        grid = observation_grid(relative, extra_times)
        offset = start.repeat_interleave(members, 0)
        b = len(series) * members
        mu0, sigma0 = model.marginal(encoded, offset[:, None])
        mu0, sigma0 = mu0[:, 0], sigma0[:, 0]
        z0 = mu0 + sigma0 * _standard_normal(mu0, generator, member_streams, "start")
        bm = None
        if member_streams is not None:
            size = (z0.shape[0], z0.shape[1] + 1)  # + the log-ratio channel of logqp
            rows = member_streams("posterior")
            bm = MemberBrownian(float(grid[0]), size, rows, z0.dtype, z0.device)
        zs, log_ratio = solve_posterior(model, encoded, z0, grid, dt, seed, "euler", offset, bm=bm)
        z_slots, path_kl = gather_slots(zs, log_ratio, grid, relative)
        rep = _repeat(relative, members)
        absolute = _repeat(series, members).times
        reconstruction = -model.decoder.log_prob(rep.values, z_slots, rep.mask, absolute)
        nelbo = reconstruction + model.initial_kl(mu0, sigma0) + path_kl
        end = torch.searchsorted(grid, rep.end.contiguous())
        at_end = zs[end, torch.arange(b, device=zs.device)]
    return PosteriorPaths(grid, zs, nelbo.reshape(-1, members).mean(-1), at_end, members)


def marginal_at_end(
    model: LatentSDE,
    series: ObservedSeries,
    members: int = 8,
    seed: int = 0,
    member_streams=None,
) -> torch.Tensor:
    """``members`` draws of ``z`` from the encoder's marginal at each sequence's last observed
    time, ``N(mu(t_end), sigma(t_end)^2)``: ``(B * M, D)``, rows ``b * M + m``.

    For SDE-matching models this marginal *is* the posterior at ``t_end``, so no posterior
    SDE needs solving before a forecast. ``member_streams``: as in :func:`posterior_paths`.
    """
    if model.posterior != "marginal":
        raise ValueError(
            "the encoder's marginal at t_end is the posterior only for posterior='marginal' "
            "models; use posterior_paths for drift models"
        )
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mu, sigma = model.marginal(model.encode(series), series.end[:, None])
        mu = mu[:, 0].repeat_interleave(members, 0)
        sigma = sigma[:, 0].repeat_interleave(members, 0)
        return mu + sigma * _standard_normal(mu, generator, member_streams, "start")


def forecast_from_states(
    model: LatentSDE,
    states: torch.Tensor,
    end: torch.Tensor,
    lead_times: torch.Tensor,
    dt: float = 1e-2,
    seed: int = 0,
    member_streams=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the prior SDE forward from latent states at each sequence's end.

    ``member_streams``: as in :func:`posterior_paths` (each row's path and observation
    noise from its own generators).

    Parameters
    ----------
    states : ``(B * M, D)`` latent states at the ends, rows ``b * M + m``
    end : ``(B,)`` last observed (absolute) time of each sequence
    lead_times : ``(H,)`` increasing times after the end, all ``> 0``

    Returns
    -------
    means, samples : ``(M, B, H, C)`` decoded means and draws with observation noise
    (normalised units).
    """
    lead_times = torch.as_tensor(lead_times).to(states)
    if lead_times.ndim != 1 or not (lead_times > 0).all() or (lead_times.diff() <= 0).any():
        raise ValueError("lead_times must be a 1-D increasing tensor of times > 0")
    m = states.shape[0] // len(end)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        grid = torch.cat([lead_times.new_zeros(1), lead_times])
        offset = end.to(states).repeat_interleave(m, 0)
        if member_streams is None:
            bm = torchsde.BrownianInterval(
                t0=0.0,
                t1=float(grid[-1]),
                size=tuple(states.shape),
                dt=dt,
                dtype=states.dtype,
                device=states.device,
                entropy=seed + 1,
                levy_area_approximation="none",
            )
        else:
            rows = member_streams("forecast")
            bm = MemberBrownian(0.0, tuple(states.shape), rows, states.dtype, states.device)
        zs = torchsde.sdeint(PriorSDE(model, offset), states, grid, bm=bm, dt=dt, method="euler")
        means = model.decoder.mean(zs[1:], offset + grid[1:, None])
        if member_streams is None:
            noise = torch.randn(means.shape, generator=generator).to(means)
        else:
            rows = member_streams("observation")
            draws = [torch.randn(means[:, 0].shape, generator=g) for g in rows]
            noise = torch.stack(draws, 1).to(means)
        samples = means + model.decoder.std * noise
    shape = (len(lead_times), len(end), m, -1)
    return (
        means.reshape(shape).permute(2, 1, 0, 3),
        samples.reshape(shape).permute(2, 1, 0, 3),
    )


def forecast_from_paths(
    model: LatentSDE,
    paths: PosteriorPaths,
    end: torch.Tensor,
    lead_times: torch.Tensor,
    dt: float = 1e-2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`forecast_from_states` from ``paths.at_end``."""
    return forecast_from_states(model, paths.at_end, end, lead_times, dt, seed)


def forecast(
    model: LatentSDE,
    series: ObservedSeries,
    lead_times: torch.Tensor,
    members: int = 16,
    dt: float = 1e-2,
    seed: int = 0,
    normalizer: ChannelNormalizer | None = None,
    sequences=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forecast ``members`` trajectories after each sequence's own last observation.

    ``series`` in data units when a ``normalizer`` is given (normalised otherwise); its
    sequences may start and end at different times. ``lead_times`` ``(H,)`` count from each
    sequence's end. SDE-matching models start from the encoder's marginal at the end
    (:func:`marginal_at_end`), drift models from a posterior solve over the window.

    ``members`` is a count or a ``range`` of member indices (a rank's block), and
    ``sequences`` the indices of ``series``' sequences in the whole data set (default
    ``0 .. B-1``): member ``i`` of sequence ``s`` draws from its own generators, seeded
    from (seed, ``s``, ``i``) (:func:`~sciml_diffusion.sde.brownian.member_rows`), so it
    is the same in any batch of sequences or members and on any rank.

    Returns ``means, samples`` ``(M, B, H, C)`` in the same units as ``series``.
    """
    block = range(members) if isinstance(members, int) else members
    sequences = range(len(series)) if sequences is None else [int(s) for s in sequences]
    if len(sequences) != len(series):
        raise ValueError(f"{len(sequences)} sequence indices for {len(series)} sequences")
    if len(block) == 0:  # a rank with no members (more ranks than members)
        empty = series.values.new_empty(0, len(series), len(lead_times), series.values.shape[-1])
        return empty, empty.clone()
    streams = functools.partial(member_rows, seed, sequences, block)
    norm = normalizer.normalize(series) if normalizer is not None else series
    if model.posterior == "marginal":
        states = marginal_at_end(model, norm, len(block), seed, member_streams=streams)
    else:
        paths = posterior_paths(model, norm, len(block), dt, seed, member_streams=streams)
        states = paths.at_end
    means, samples = forecast_from_states(
        model, states, norm.end, lead_times, dt, seed, member_streams=streams
    )
    if normalizer is not None:
        means, samples = normalizer.denormalize(means), normalizer.denormalize(samples)
    return means, samples


def _standard_normal(like: torch.Tensor, generator, member_streams, stream: str):
    """``N(0, I)`` of ``like``'s shape ``(R, D)``: from ``generator``, or row by row."""
    if member_streams is None:
        return torch.randn(like.shape, generator=generator).to(like)
    rows = member_streams(stream)
    return torch.stack([torch.randn(like.shape[1:], generator=g) for g in rows]).to(like)


def evaluate(
    model: LatentSDE,
    observed: ObservedSeries,
    normalizer: ChannelNormalizer,
    future: ObservedSeries | None = None,
    heldout: ObservedSeries | None = None,
    members: int = 8,
    dt: float = 1e-2,
    seed: int = 0,
    batch_size: int = 64,
    fair: bool = True,
) -> Evaluation:
    """Score ``model`` on test sequences (all in data units).

    Parameters
    ----------
    observed : ObservedSeries ``(B, T, C)``
        What the encoder sees.
    normalizer : ChannelNormalizer
        The training normaliser (the model works in its units).
    future : ObservedSeries ``(B, H, C)``, optional
        Values after each sequence's last observed time, at the same lead times for every
        sequence; scored by forecast MSE and CRPS.
    heldout : ObservedSeries ``(B, T', C)``, optional
        Values at times inside the window that ``observed`` lacks; scored by MSE.
    members : int
        Posterior paths (and forecast members) per sequence.
    batch_size : int
        Sequences per solve.
    fair : bool
        Fair CRPS estimator (unbiased in ``M``); ``False`` for the plain one, which the
        SDE-matching results page (docs/results/sde_matching.md) used.
    """
    totals = {"nelbo": 0.0, "values": 0.0, "se": 0.0, "crps": 0.0, "n_f": 0.0}
    totals.update(interp=0.0, n_i=0.0, free=0.0)
    model.eval()
    for start in range(0, len(observed), batch_size):
        rows = slice(start, start + batch_size)
        _evaluate_batch(
            model,
            observed[rows],
            normalizer,
            None if future is None else future[rows],
            None if heldout is None else heldout[rows],
            members,
            dt,
            seed + start,
            totals,
            fair,
        )
    n = len(observed)
    return Evaluation(
        nelbo=totals["nelbo"] / n,
        nelbo_per_value=totals["nelbo"] / totals["values"],
        forecast_mse=totals["se"] / totals["n_f"] if totals["n_f"] else math.nan,
        forecast_crps=totals["crps"] / totals["n_f"] if totals["n_f"] else math.nan,
        interpolation_mse=totals["interp"] / totals["n_i"] if totals["n_i"] else math.nan,
        nelbo_simulation_free=totals["free"] / n if model.posterior == "marginal" else math.nan,
    )


@torch.no_grad()
def _evaluate_batch(model, observed, normalizer, future, heldout, members, dt, seed, totals, fair):
    norm = normalizer.normalize(observed)
    start = norm.start
    extra = None if heldout is None else (heldout.times - start[:, None])[heldout.observed]
    paths = posterior_paths(model, norm, members, dt, seed, extra)
    log_std = normalizer.std.to(norm.values).log()
    jacobian = (norm.mask * log_std).sum((-2, -1))
    totals["nelbo"] += float((paths.nelbo + jacobian).sum())
    if model.posterior == "marginal":
        generator = torch.Generator().manual_seed(seed)
        free = sde_matching_loss(model, norm, t_samples=64, generator=generator).nelbo
        totals["free"] += float((free + jacobian).sum())
    totals["values"] += float(norm.mask.sum())
    if future is not None:
        lead = _shared_lead_times(future, norm.end)
        means, samples = forecast_from_paths(model, paths, norm.end, lead, dt, seed)
        means = normalizer.denormalize(means)
        samples = normalizer.denormalize(samples)
        truth, mask = future.values, future.mask.to(future.values)
        totals["se"] += float((((means.mean(0) - truth) ** 2) * mask).sum())
        crps = crps_ensemble(samples.cpu(), truth.cpu(), member_dim=0, fair=fair)
        totals["crps"] += float(np.sum(np.asarray(crps) * mask.cpu().numpy()))
        totals["n_f"] += float(mask.sum())
    if heldout is not None:
        offset = start.repeat_interleave(members, 0)
        decoded = model.decoder.mean(paths.zs, paths.grid[:, None] + offset)
        relative = (heldout.times - start[:, None]).contiguous()
        index = torch.searchsorted(paths.grid, relative)
        index = index.clamp_max(len(paths.grid) - 1)
        b = len(heldout)
        rows = torch.arange(b * members, device=decoded.device)[:, None]
        per_member = decoded[index.repeat_interleave(members, 0), rows]
        mean = normalizer.denormalize(per_member.reshape(b, members, *index.shape[1:], -1))
        err = (mean.mean(1) - heldout.values) ** 2 * heldout.mask
        totals["interp"] += float(err.sum())
        totals["n_i"] += float(heldout.mask.sum())


def _shared_lead_times(future: ObservedSeries, end: torch.Tensor) -> torch.Tensor:
    lead = future.times - end[:, None]
    if not torch.allclose(lead, lead[:1], atol=1e-5):
        raise ValueError(
            "future times must be at the same lead times after each sequence's end; "
            "evaluate sequences with different horizons separately"
        )
    return lead[0]


def fit_ou_drift(x: torch.Tensor, drift: torch.Tensor, diffusion: torch.Tensor) -> dict:
    """Least-squares fit of ``drift(x) = theta (mu - x)`` and ``sigma = mean diffusion(x)``.

    ``x``, ``drift``, ``diffusion``: ``(N,)`` on a grid of data values.
    """
    design = torch.stack([torch.ones_like(x), x], -1)
    (intercept, slope) = torch.linalg.lstsq(design, drift[:, None]).solution[:, 0]
    theta = -float(slope)
    return {
        "theta": theta,
        "mu": float(intercept) / theta if theta != 0 else math.nan,
        "sigma": float(diffusion.abs().mean()),
    }


def ou_parameters(
    model: LatentSDE, normalizer: ChannelNormalizer, x: torch.Tensor
) -> dict[str, float]:
    """OU parameters recovered from a 1-D latent SDE over data values ``x`` ``(N,)``."""
    if model.latent_dim != 1 or model.config["data_dim"] != 1:
        raise ValueError(
            "OU parameter recovery needs latent_dim = data_dim = 1, got "
            f"{model.latent_dim} and {model.config['data_dim']}"
        )
    weight, bias = model.decoder.linear.weight.detach(), model.decoder.linear.bias.detach()
    a = float(weight) * float(normalizer.std[0])
    b = float(bias) * float(normalizer.std[0]) + float(normalizer.mean[0])
    with torch.no_grad():
        z = ((x - b) / a)[:, None].to(model.initial_mean)
        t = torch.zeros(len(x)).to(z)
        drift = a * model.prior_drift(t, z)[:, 0]
        diffusion = abs(a) * model.diffusion(t, z)[:, 0]
    return fit_ou_drift(x.to(drift), drift, diffusion)


def _repeat(series: ObservedSeries, members: int) -> ObservedSeries:
    return ObservedSeries(
        series.times.repeat_interleave(members, 0),
        series.values.repeat_interleave(members, 0),
        series.mask.repeat_interleave(members, 0),
    )
