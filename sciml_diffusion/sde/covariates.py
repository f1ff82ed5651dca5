"""Known covariates of time for the latent dynamics: calendar phase, raw time, none.

A seasonal series repeats with a known period ``P`` (12 months, 365.25 days). Its dynamics
are then those of a *non-autonomous* SDE whose drift and diffusion depend on the phase of
the year, which the model is given as Fourier features::

    c(t) = [sin(2 pi k t / P), cos(2 pi k t / P)]   for k = 1 .. K          (2K features)

so ``f_theta(z, c(t))`` and ``g_theta(z, c(t))`` can learn an annual cycle instead of
absorbing it into noise. Features of absolute time stay bounded, so a model trained on the
early part of a record forecasts from windows later in it. :class:`RawTime` (``c(t) = t``)
is the older unbounded choice, kept for models that must depend on the time itself;
:class:`TabulatedCovariates` interpolates any user-given covariate series linearly in time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SeasonalCovariates", "RawTime", "TabulatedCovariates", "make_covariates"]


class SeasonalCovariates(nn.Module):
    """``K`` harmonics of the calendar phase, ``t`` ``(*)`` -> ``(*, 2K)``.

    Parameters
    ----------
    period : float
        ``P`` in the data's time units (12 for monthly data in months).
    harmonics : int
        ``K >= 1``.
    """

    def __init__(self, period: float, harmonics: int = 2):
        super().__init__()
        if not period > 0:
            raise ValueError(f"period must be > 0 (in the data's time units), got {period}")
        if harmonics < 1:
            raise ValueError(f"harmonics must be >= 1, got {harmonics}")
        rates = 2 * math.pi * torch.arange(1, harmonics + 1, dtype=torch.float32) / period
        self.register_buffer("rates", rates[None, :], persistent=False)
        self.period, self.harmonics = float(period), int(harmonics)

    @property
    def dim(self) -> int:
        return 2 * self.harmonics

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angle = torch.as_tensor(t)[..., None] @ self.rates.to(t)  # matmul: cheap under jvp
        return torch.cat([angle.sin(), angle.cos()], -1)


class RawTime(nn.Module):
    """``c(t) = t``, ``(*)`` -> ``(*, 1)`` (unbounded: forecasts only inside the trained span)."""

    dim = 1

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t)[..., None]


class TabulatedCovariates(nn.Module):
    """A user-given covariate series ``(times (N,), values (N, F))``, linear in between.

    Times outside ``[times[0], times[-1]]`` take the nearest end value. Stored as buffers,
    so a checkpoint carries the series.
    """

    def __init__(self, times, values):
        super().__init__()
        times = torch.as_tensor(times, dtype=torch.float32).flatten()
        values = torch.as_tensor(values, dtype=torch.float32)
        values = values[:, None] if values.ndim == 1 else values
        if values.shape[0] != times.shape[0] or times.numel() < 2:
            raise ValueError(
                f"covariate series needs >= 2 times and one row per time, got {times.numel()} "
                f"times and values of shape {tuple(values.shape)}"
            )
        if (times.diff() <= 0).any():
            raise ValueError("covariate times must be strictly increasing; sort them")
        self.register_buffer("times", times)
        self.register_buffer("values", values)

    @property
    def dim(self) -> int:
        return self.values.shape[1]

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t).to(self.times)
        tc = t.clamp(self.times[0], self.times[-1])
        right = torch.searchsorted(self.times, tc.detach().contiguous())
        right = right.clamp(1, len(self.times) - 1)
        t0, t1 = self.times[right - 1], self.times[right]
        w = ((tc - t0) / (t1 - t0))[..., None]
        return (1 - w) * self.values[right - 1] + w * self.values[right]


def make_covariates(
    autonomous: bool, period: float | None, harmonics: int, series: dict | None = None
) -> nn.Module | None:
    """The covariates a :class:`~sciml_diffusion.sde.latent.LatentSDE` config asks for.

    ``series`` (``{"times": [...], "values": [[...], ...]}``) wins over ``period``, which
    wins over raw time; an autonomous model without either has none.
    """
    if series is not None:
        return TabulatedCovariates(series["times"], series["values"])
    if period is not None:
        return SeasonalCovariates(period, harmonics)
    return None if autonomous else RawTime()
