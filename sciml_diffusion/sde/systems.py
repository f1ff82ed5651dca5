"""Stochastic systems that generate benchmark time series, all Itô SDEs with diagonal noise.

- Stochastic Lorenz (as in Li et al. 2020, torchsde ``examples/latent_sde_lorenz.py``)::

      dx = a1 (y - x) dt + b1 x dW1
      dy = (a2 x - y - x z) dt + b2 y dW2
      dz = (x y - a3 z) dt + b3 z dW3,      a = (10, 28, 8/3)

- Ornstein-Uhlenbeck ``dX = theta (mu - X) dt + sigma dW``; its stationary law is
  ``N(mu, sigma^2 / (2 theta))`` and its transition is Gaussian with mean
  ``mu + (x0 - mu) e^{-theta t}`` and variance ``sigma^2 (1 - e^{-2 theta t}) / (2 theta)``.
- Double-well Langevin ``dX = (X - X^3) dt + sigma dW`` (overdamped motion in the potential
  ``V(x) = x^4/4 - x^2/2``; stationary density proportional to ``exp(-2 V(x) / sigma^2)``).

Paths are solved with torchsde (Euler-Maruyama) driven by an explicit
``torchsde.BrownianInterval`` (the default Brownian motion is tens of times slower).
"""

from __future__ import annotations

import json
import math

import torch
import torchsde
import xarray as xr
from torch import nn

from sciml_diffusion.sde.series import ObservedSeries, series_to_dataset

__all__ = [
    "StochasticLorenz",
    "OrnsteinUhlenbeck",
    "DoubleWell",
    "SYSTEMS",
    "simulate",
    "simulate_dataset",
]


class _DiagonalItoSystem(nn.Module):
    """Base class: torchsde interface ``f(t, y)``, ``g(t, y)`` with ``y`` ``(B, D)``."""

    noise_type = "diagonal"
    sde_type = "ito"
    name = "system"
    channels: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        return len(self.channels)

    def parameters_dict(self) -> dict:
        raise NotImplementedError

    def initial_state(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, D)`` initial states."""
        raise NotImplementedError


class StochasticLorenz(_DiagonalItoSystem):
    """Lorenz-63 with diagonal multiplicative noise ``g(y) = b * y``.

    Parameters
    ----------
    a : (3,) floats
        Drift parameters (sigma, rho, beta) of the Lorenz system.
    b : (3,) floats
        Multiplicative noise scale per component.
    """

    name = "lorenz"
    channels = ("x", "y", "z")

    def __init__(self, a=(10.0, 28.0, 8.0 / 3.0), b=(0.15, 0.15, 0.15)):
        super().__init__()
        if len(a) != 3 or len(b) != 3:
            raise ValueError(f"Lorenz needs 3 drift and 3 noise parameters, got a={a}, b={b}")
        self.a, self.b = tuple(float(v) for v in a), tuple(float(v) for v in b)

    def f(self, t, y):
        x1, x2, x3 = y.unbind(-1)
        a1, a2, a3 = self.a
        return torch.stack([a1 * (x2 - x1), a2 * x1 - x2 - x1 * x3, x1 * x2 - a3 * x3], -1)

    def g(self, t, y):
        return y * torch.tensor(self.b, dtype=y.dtype, device=y.device)

    def parameters_dict(self) -> dict:
        return {"a": list(self.a), "b": list(self.b)}

    def initial_state(self, n, generator=None):
        return torch.randn(n, 3, generator=generator)


class OrnsteinUhlenbeck(_DiagonalItoSystem):
    """``dX = theta (mu - X) dt + sigma dW`` in one dimension.

    Parameters
    ----------
    theta : float > 0
        Mean-reversion rate.
    mu : float
        Long-run mean.
    sigma : float > 0
        Diffusion coefficient.
    """

    name = "ou"
    channels = ("x",)

    def __init__(self, theta: float = 2.0, mu: float = 0.5, sigma: float = 0.5):
        super().__init__()
        if theta <= 0 or sigma <= 0:
            raise ValueError(f"OU needs theta > 0 and sigma > 0, got {theta}, {sigma}")
        self.theta, self.mu, self.sigma = float(theta), float(mu), float(sigma)

    @property
    def stationary_std(self) -> float:
        return self.sigma / math.sqrt(2.0 * self.theta)

    def f(self, t, y):
        return self.theta * (self.mu - y)

    def g(self, t, y):
        return torch.full_like(y, self.sigma)

    def parameters_dict(self) -> dict:
        return {"theta": self.theta, "mu": self.mu, "sigma": self.sigma}

    def initial_state(self, n, generator=None):
        """Draws from the stationary law."""
        return self.mu + self.stationary_std * torch.randn(n, 1, generator=generator)


class DoubleWell(_DiagonalItoSystem):
    """Overdamped Langevin motion ``dX = (X - X^3) dt + sigma dW`` in a double well.

    Parameters
    ----------
    sigma : float > 0
        Noise level; larger values hop between the wells at ``+-1`` more often.
    """

    name = "double-well"
    channels = ("x",)

    def __init__(self, sigma: float = 0.7):
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"double well needs sigma > 0, got {sigma}")
        self.sigma = float(sigma)

    def f(self, t, y):
        return y - y**3

    def g(self, t, y):
        return torch.full_like(y, self.sigma)

    def parameters_dict(self) -> dict:
        return {"sigma": self.sigma}

    def initial_state(self, n, generator=None):
        sign = torch.randint(0, 2, (n, 1), generator=generator) * 2.0 - 1.0
        return sign + 0.1 * torch.randn(n, 1, generator=generator)


#: systems by CLI name
SYSTEMS = {"lorenz": StochasticLorenz, "ou": OrnsteinUhlenbeck, "double-well": DoubleWell}


def simulate(
    system: nn.Module,
    y0: torch.Tensor,
    ts: torch.Tensor,
    dt: float = 1e-3,
    seed: int = 0,
) -> torch.Tensor:
    """Solve ``system`` from ``y0`` ``(B, D)`` and return the path ``(B, T, D)`` at ``ts``.

    Euler-Maruyama with step ``dt``, driven by a ``BrownianInterval`` seeded by ``seed``.
    """
    ts = torch.as_tensor(ts, dtype=y0.dtype, device=y0.device)
    bm = torchsde.BrownianInterval(
        t0=float(ts[0]),
        t1=float(ts[-1]),
        size=tuple(y0.shape),
        dt=dt,
        dtype=y0.dtype,
        device=y0.device,
        entropy=seed,
        levy_area_approximation="none",
    )
    with torch.no_grad():
        ys = torchsde.sdeint(system, y0, ts, bm=bm, method="euler", dt=dt)
    return ys.transpose(0, 1)


def simulate_dataset(
    system: nn.Module,
    samples: int,
    times: int,
    t_end: float = 1.0,
    dt: float = 1e-3,
    burn_in: float = 0.0,
    keep: float = 1.0,
    missing: float = 0.0,
    obs_noise: float = 0.0,
    seed: int = 0,
) -> xr.Dataset:
    """Simulate ``samples`` sequences of ``times`` observation slots on ``[0, t_end]``.

    Parameters
    ----------
    system : one of :data:`SYSTEMS`' classes, instantiated
    samples, times : int
        Number of sequences and of observation times on the regular grid.
    t_end : float
        Length of the observed window.
    dt : float
        Solver step.
    burn_in : float
        Time simulated before ``t = 0`` and discarded.
    keep : float in (0, 1]
        Irregular sampling: each sequence keeps its own random ``round(keep * times)`` of the
        grid times (always including ``t = 0``), stored in ``obs_time``.
    missing : float in [0, 1)
        Probability that each value (after ``t = 0``) is missing (NaN).
    obs_noise : float
        Standard deviation of Gaussian observation noise added to every value.
    seed : int
        Seeds the initial states, the Brownian motion, sampling and noise.

    Returns
    -------
    xarray.Dataset with ``state(sample, time, channel)`` (and ``obs_time(sample, time)`` when
    irregular or with missing values), attrs recording the system and its parameters.
    """
    _check_simulation_args(samples, times, t_end, dt, keep, missing, obs_noise)
    generator = torch.Generator().manual_seed(seed)
    y0 = system.initial_state(samples, generator).to(torch.get_default_dtype())
    if burn_in > 0:
        y0 = simulate(system, y0, torch.tensor([0.0, burn_in]), dt, seed + 1)[:, -1]
    grid = torch.linspace(0.0, t_end, times)
    path = simulate(system, y0, grid, dt, seed)
    values = path + obs_noise * torch.randn(path.shape, generator=generator)
    values = _drop_missing(values, missing, generator)
    series_times, values = _subsample(grid, values, keep, generator)
    series = ObservedSeries.from_tensors(series_times, values)
    attrs = {
        "system": system.name,
        "system_parameters": json.dumps(system.parameters_dict()),
        "obs_noise": obs_noise,
        "seed": seed,
        "solver_dt": dt,
        "burn_in": burn_in,
    }
    return series_to_dataset(series, channels=system.channels, attrs=attrs)


def _check_simulation_args(samples, times, t_end, dt, keep, missing, obs_noise) -> None:
    if samples < 1 or times < 2:
        raise ValueError(f"need samples >= 1 and times >= 2, got {samples} and {times}")
    if not t_end > 0 or not dt > 0:
        raise ValueError(f"need t_end > 0 and dt > 0, got {t_end} and {dt}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    if not 0 <= missing < 1:
        raise ValueError(f"missing must be in [0, 1), got {missing}")
    if obs_noise < 0:
        raise ValueError(f"obs_noise must be >= 0, got {obs_noise}")


def _drop_missing(values: torch.Tensor, missing: float, generator) -> torch.Tensor:
    if missing == 0:
        return values
    drop = torch.rand(values.shape, generator=generator) < missing
    drop[:, 0] = False
    return values.masked_fill(drop, torch.nan)


def _subsample(grid, values, keep: float, generator):
    """Each sequence keeps ``keep * T`` random grid times (with t = 0), left-packed."""
    b, t, _ = values.shape
    count = max(2, round(keep * t))
    if count >= t:
        return grid, values
    scores = torch.rand(b, t, generator=generator)
    scores[:, 0] = -1.0
    index = scores.argsort(-1)[:, :count].sort(-1).values
    times = grid[index]
    picked = torch.gather(values, 1, index[..., None].expand(-1, -1, values.shape[-1]))
    return times, picked
