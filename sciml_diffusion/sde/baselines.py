"""Latent-SDE training through an SDE solver: torchsde adjoint and backprop baselines.

The posterior is an SDE ``dz = h_phi(z, t, X) dt + g(z, t) dW`` sharing the prior's
diffusion, started from ``q(z_t0) = N(mu_phi(t0, X), sigma_phi(t0, X)^2)`` (Li et al. 2020,
"Scalable gradients for stochastic differential equations", torchsde
``examples/latent_sde_lorenz.py``). One solve with ``logqp=True`` accumulates the path KL
``int 1/2 |(h_phi - f_theta) / g|^2 dt`` and yields samples at the observation times::

    NELBO = KL(q(z_t0) || p(z_t0)) + path KL - sum_i log p(x_i | z_ti)   (one path sample)

- ``adjoint``: ``torchsde.sdeint_adjoint`` in Stratonovich form with the reversible Heun
  solver and its exact adjoint (Kidger et al. 2021): memory constant in the number of steps.
- ``backprop``: ``torchsde.sdeint`` with the same solver, differentiated through its
  operations: memory linear in the number of steps.

Drifts are stored in Itô form; for the Stratonovich solve both posterior and prior drifts are
shifted by ``-1/2 g dg/dz`` (elementwise ``g``), which leaves their difference and so the KL
unchanged. Every solve is driven by an explicit ``torchsde.BrownianInterval``. Sequences
that start at different times are solved together on times relative to each one's start
(:func:`relative_times`); every part that depends on absolute time (prior drift and
diffusion through their covariates, the encoder's queries) is given ``offset + t``.
"""

from __future__ import annotations

import math

import torch
import torchsde
from torch import nn

from sciml_diffusion.data_parallel import item_generators, per_item
from sciml_diffusion.sde.latent import ConstantDiffusion, EncodedSequence, LatentSDE, NELBOTerms
from sciml_diffusion.sde.matching import diffusion_with_divergence, implied_posterior_drift
from sciml_diffusion.sde.series import ObservedSeries

__all__ = [
    "PosteriorSDE",
    "PriorSDE",
    "observation_grid",
    "relative_times",
    "solve_posterior",
    "solver_nelbo",
    "gather_slots",
]


class PosteriorSDE(nn.Module):
    """The posterior SDE of a :class:`LatentSDE` in torchsde's interface (``f``, ``g``, ``h``).

    ``f`` is the posterior drift, ``h`` the prior drift, ``g`` the shared diffusion. For
    ``posterior="drift"`` models the encoder's context is computed once, in one batch, on
    the solver's lattice ``t0 + k dt`` (where a fixed-step solver evaluates the drift) and
    looked up by the nearest lattice time; for ``posterior="marginal"`` models the drift is
    the one implied by the marginals, evaluated at the exact ``t``.

    Parameters
    ----------
    model : LatentSDE
    encoded : EncodedSequence, batch ``B``
        The observed sequences, one per row of the state ``z`` ``(B, D)``.
    t0, t1, dt : float
        Solve interval and fixed step.
    sde_type : {"ito", "stratonovich"}
    offset : Tensor ``(B,)``, optional
        Absolute time of each row at solver time 0 (default 0).
    """

    noise_type = "diagonal"

    def __init__(
        self,
        model: LatentSDE,
        encoded: EncodedSequence,
        t0: float,
        t1: float,
        dt: float,
        sde_type: str = "ito",
        offset: torch.Tensor | None = None,
    ):
        super().__init__()
        if sde_type not in ("ito", "stratonovich"):
            raise ValueError(f"sde_type must be 'ito' or 'stratonovich', got {sde_type!r}")
        self.model, self.encoded, self.sde_type = model, encoded, sde_type
        self.t0, self.dt = t0, dt
        b = encoded.times.shape[0]
        self.offset = encoded.times.new_zeros(b) if offset is None else offset.to(encoded.times)
        self._cache: tuple = (None, None, None)
        if model.posterior == "drift":
            steps = max(1, math.ceil((t1 - t0) / dt - 1e-6))
            lattice = t0 + dt * torch.arange(steps + 1).to(encoded.times)
            lattice[-1] = t1
            self.contexts = model.encoder.context(encoded, self.offset[:, None] + lattice)

    def _absolute(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``(B,)`` absolute times of solver time ``t``."""
        return self.offset.to(z) + t.to(z)

    def adjoint_parameters(self) -> tuple[torch.Tensor, ...]:
        """Everything ``f``, ``g``, ``h`` depend on directly (``sdeint_adjoint``'s params)."""
        if self.model.posterior != "drift":
            raise ValueError("adjoint training needs a LatentSDE with posterior='drift'")
        model = self.model
        params = [self.contexts, *model.posterior_drift_net.parameters()]
        return tuple(params + [*model.prior_drift_net.parameters(), *model.diffusion.parameters()])

    def _ito_posterior_drift(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.model.posterior == "drift":
            k = int(
                torch.clamp(torch.round((t - self.t0) / self.dt), 0, self.contexts.shape[1] - 1)
            )
            return self.model.posterior_drift(self.contexts[:, k], z)
        t = self._absolute(t, z)
        drift, _ = implied_posterior_drift(self.model, self.encoded, t[:, None], z[:, None])
        return drift[:, 0]

    def _stratonovich_shift(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``1/2 g dg/dz``, cached for the ``h`` call that follows ``f`` at the same point."""
        if self.sde_type == "ito" or isinstance(self.model.diffusion, ConstantDiffusion):
            return torch.zeros_like(z)
        cached_t, cached_z, shift = self._cache
        if cached_t is t and cached_z is z:
            return shift
        _, half_div = diffusion_with_divergence(self.model, self._absolute(t, z), z)
        self._cache = (t, z, 0.5 * half_div)
        return 0.5 * half_div

    def f(self, t, z):
        return self._ito_posterior_drift(t, z) - self._stratonovich_shift(t, z)

    def h(self, t, z):
        prior = self.model.prior_drift(self._absolute(t, z), z)
        return prior - self._stratonovich_shift(t, z)

    def g(self, t, z):
        return self.model.diffusion(self._absolute(t, z), z)


class PriorSDE(nn.Module):
    """The prior SDE of a :class:`LatentSDE` (Itô), with a time offset per row.

    Parameters
    ----------
    model : LatentSDE
    offset : Tensor ``(B,)``
        Absolute time of each row at solver time 0 (forecasts start at each sequence's end).
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, model: LatentSDE, offset: torch.Tensor):
        super().__init__()
        self.model, self.offset = model, offset

    def f(self, t, z):
        return self.model.prior_drift(self.offset + t.to(z), z)

    def g(self, t, z):
        return self.model.diffusion(self.offset + t.to(z), z)


def observation_grid(series: ObservedSeries, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Sorted union of the observed times of a batch (and ``extra`` times), ``(G,)``.

    Raises ``ValueError`` if the sequences do not all start at the same time.
    """
    times = series.times[series.observed]
    if extra is not None:
        times = torch.cat([times, extra.flatten()])
    grid = torch.unique(times)
    start = series.start
    if not torch.all(start == grid[0]):
        raise ValueError(
            "solver-based training and evaluation need every sequence of a batch to start "
            f"at the same time, got starts from {float(start.min()):g} to "
            f"{float(start.max()):g}; pass relative_times(series) and give the starts "
            "as the solver's offset"
        )
    return grid


def relative_times(series: ObservedSeries) -> tuple[ObservedSeries, torch.Tensor]:
    """``series`` with each sequence's times shifted to start at 0, and the starts ``(B,)``."""
    start = series.start
    return ObservedSeries(series.times - start[:, None], series.values, series.mask), start


def solve_posterior(
    model: LatentSDE,
    encoded: EncodedSequence,
    z0: torch.Tensor,
    grid: torch.Tensor,
    dt: float,
    seed: int,
    method: str = "euler",
    offset: torch.Tensor | None = None,
    bm=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve the posterior SDE with ``logqp=True`` on ``grid``.

    ``method``: ``"euler"`` (Itô, no gradients needed), ``"backprop"`` or ``"adjoint"``
    (Stratonovich reversible Heun). ``offset`` ``(B,)``: absolute time of each row at
    ``grid``'s solver time 0. ``bm``: the Brownian motion ``(B, D + 1)`` (default a
    ``BrownianInterval`` from ``seed``). Returns ``zs`` ``(G, B, D)`` and the path-KL
    increments ``(G - 1, B)``.
    """
    if method not in ("euler", "backprop", "adjoint"):
        raise ValueError(f"method must be 'euler', 'backprop' or 'adjoint', got {method!r}")
    sde_type = "ito" if method == "euler" else "stratonovich"
    sde = PosteriorSDE(model, encoded, float(grid[0]), float(grid[-1]), dt, sde_type, offset)
    if bm is None:
        bm = torchsde.BrownianInterval(
            t0=float(grid[0]),
            t1=float(grid[-1]),
            size=(z0.shape[0], z0.shape[1] + 1),
            dt=dt,
            dtype=z0.dtype,
            device=z0.device,
            entropy=seed,
            levy_area_approximation="none",
        )
    if method == "adjoint":
        return torchsde.sdeint_adjoint(
            sde,
            z0,
            grid,
            bm=bm,
            dt=dt,
            method="reversible_heun",
            adjoint_method="adjoint_reversible_heun",
            adjoint_params=sde.adjoint_parameters(),
            logqp=True,
        )
    solver = "euler" if method == "euler" else "reversible_heun"
    return torchsde.sdeint(sde, z0, grid, bm=bm, dt=dt, method=solver, logqp=True)


def solver_nelbo(
    model: LatentSDE,
    series: ObservedSeries,
    method: str = "adjoint",
    dt: float = 1e-2,
    generator: torch.Generator | None = None,
) -> NELBOTerms:
    """NELBO terms from one posterior path per sequence, solved by ``method``.

    Parameters
    ----------
    model : LatentSDE
    series : ObservedSeries, batch ``B``; sequences may start at different times
    method : {"adjoint", "backprop", "euler"}
    dt : float
        Solver step.
    generator : torch.Generator or list of B torch.Generator, optional
        Sequence ``b`` draws its ``z_t0`` noise from its own generator (a list is used as
        given; a single generator seeds one per sequence,
        :func:`~sciml_diffusion.data_parallel.item_generators`); the seed of the batch's
        one ``BrownianInterval`` is drawn next from the first sequence's generator.
    """
    encoded = model.encode(series)
    relative, start = relative_times(series)
    grid = observation_grid(relative)
    mu0, sigma0 = model.marginal(encoded, start[:, None])
    generators = item_generators(generator, len(series))
    eps = per_item(generators, lambda g: torch.randn(model.latent_dim, generator=g)).to(mu0)
    z0 = mu0[:, 0] + sigma0[:, 0] * eps
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generators[0]))
    zs, log_ratio = solve_posterior(model, encoded, z0, grid, dt, seed, method, start)
    z_slots, path_kl = gather_slots(zs, log_ratio, grid, relative)
    reconstruction = -model.decoder.log_prob(series.values, z_slots, series.mask, series.times)
    return NELBOTerms(reconstruction, model.initial_kl(mu0[:, 0], sigma0[:, 0]), path_kl)


def gather_slots(zs, log_ratio, grid, series: ObservedSeries):
    """States at each slot ``(B, T, D)`` and the path KL up to each sequence's end ``(B,)``.

    ``zs`` ``(G, B, D)`` and ``log_ratio`` ``(G - 1, B)`` as returned by
    :func:`solve_posterior`; ``B`` may be a multiple of ``len(series)`` (members in a row).
    """
    b = zs.shape[1]
    members = b // len(series)
    times = series.times.repeat_interleave(members, 0)
    index = torch.searchsorted(grid, times.contiguous()).clamp_max(len(grid) - 1)
    rows = torch.arange(b, device=zs.device)[:, None]
    z_slots = zs[index, rows]
    end = torch.searchsorted(grid, series.end.repeat_interleave(members, 0).contiguous())
    cumulative = torch.cat([torch.zeros_like(log_ratio[:1]), log_ratio.cumsum(0)], 0)
    return z_slots, cumulative[end, torch.arange(b, device=zs.device)]
