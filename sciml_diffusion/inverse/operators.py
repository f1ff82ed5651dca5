r"""Observation operators: what was measured, how, and how noisily.

A :class:`Measurement` is the likelihood :math:`y = A(x) + \varepsilon`,
:math:`\varepsilon \sim \mathcal N(0, \mathrm{diag}(s^2))`, written on the *normalised*
fields ``x (B, C, *grid.shape)`` the prior works with: ``A`` maps them to ``(B, K)``
measured numbers, ``y`` is ``(K,)`` (or ``(B, K)``, one row per batch element) and ``std``
``(K,)``. Every guidance method reads only this object, so point sensors, integrals,
Fourier coefficients or any differentiable map of the fields fit the same methods.

:func:`sensor_measurement` builds it from :class:`~sciml_diffusion.fields.Observations`
(physical units, one column per variable, NaN where a variable was not read): the values
and noise std are divided by the prior's normalisation, the NaN entries dropped. The
(sensor, variable) entries kept are the measured numbers, so "sensors on ``u`` only" and
"sensors on ``a`` only" are the same call with a different ``variables``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from sciml_diffusion.fields import Grid, Normalizer, Observations

__all__ = ["Measurement", "sensor_measurement"]


class Measurement:
    """A differentiable observation operator with its data and Gaussian noise.

    Parameters
    ----------
    operator : callable ``(B, C, *spatial) -> (B, K)``
        The forward map ``A`` on normalised fields; must be differentiable with torch.
    y : tensor ``(K,)`` or ``(B, K)``
        Observed values in the same (normalised) units as ``A(x)``.
    std : float or tensor ``(K,)``
        Noise standard deviation of each measured number (>= 0).
    groups : tensor ``(K,)`` of int, optional
        The variable (channel) each number measures, for per-variable weights.
    names : sequence of str, optional
        Names of the groups.
    scale : tensor ``(K,)``, optional
        Physical size of one normalised unit of each number (for losses in physical units).
    """

    def __init__(
        self,
        operator: Callable[[torch.Tensor], torch.Tensor],
        y,
        std=0.0,
        groups=None,
        names: Sequence[str] | None = None,
        scale=None,
    ):
        self.operator = operator
        self.y = torch.as_tensor(y, dtype=torch.float32)
        if self.y.ndim not in (1, 2) or self.y.shape[-1] < 1:
            raise ValueError(
                f"y must have shape (K,) or (B, K) with K >= 1, got {tuple(self.y.shape)}"
            )
        if not torch.isfinite(self.y).all():
            raise ValueError("y holds NaN or infinite values; drop those measurements first")
        size = self.y.shape[-1]
        self.std = torch.as_tensor(std, dtype=torch.float32).expand(size).clone()
        if not (self.std >= 0).all() or not torch.isfinite(self.std).all():
            raise ValueError("measurement noise std must be finite and >= 0")
        self.groups = (
            torch.zeros(size, dtype=torch.long) if groups is None else torch.as_tensor(groups)
        )
        self.names = tuple(names) if names is not None else ("y",)
        self.group_ids = sorted(set(self.groups.tolist()))  # host copy, read in step loops
        self.scale = (
            torch.ones(size) if scale is None else torch.as_tensor(scale, dtype=torch.float32)
        )

    @property
    def size(self) -> int:
        """Number ``K`` of measured numbers."""
        return int(self.y.shape[-1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``A(x)``: ``(B, K)`` from normalised fields ``(B, C, *spatial)``."""
        return self.operator(x)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``y - A(x)``, shape ``(B, K)``."""
        y = self.y.to(device=x.device, dtype=x.dtype)
        return y - self.operator(x)

    def to(self, device) -> Measurement:
        """Move ``y``, ``std``, ``groups`` and ``scale`` to ``device`` (in place; returns self)."""
        self.y, self.std = self.y.to(device), self.std.to(device)
        self.groups, self.scale = self.groups.to(device), self.scale.to(device)
        return self

    def rows(self, cases: torch.Tensor) -> Measurement:
        """The measurement of a batch whose row ``j`` observes case ``cases[j]`` (``y (B, K)``);
        unchanged when ``y`` is one case ``(K,)``."""
        if self.y.ndim == 1:
            return self
        y = self.y[cases.to(self.y.device)]
        return Measurement(self.operator, y, self.std, self.groups, self.names, self.scale)

    def require_noise(self, method: str) -> None:
        """Raise unless every noise std is positive (methods with an explicit likelihood)."""
        if not (self.std > 0).all():
            raise ValueError(
                f"{method} needs a positive sensor noise std (its likelihood is Gaussian); "
                "give observations a noise_std > 0, e.g. 1% of the field's spread"
            )

    def __repr__(self) -> str:
        return f"Measurement(K={self.size}, groups={list(self.names)})"


def sensor_measurement(
    observations: Observations,
    grid: Grid,
    variables: Sequence[str],
    normalizer: Normalizer | None = None,
    noise_std: float | Mapping[str, float] | None = None,
    case: int | None = None,
) -> Measurement:
    """Point sensors as a :class:`Measurement` on normalised fields.

    Parameters
    ----------
    observations : Observations
        Sensor positions (inside ``grid``'s domain) and values ``(S, V)`` or ``(B, S, V)``
        in physical units; NaN entries mean "not observed" and are dropped. A sensor with
        no value at all is dropped with a warning.
    grid : Grid
        The grid the fields are sampled on.
    variables : sequence of str
        The channels of the fields (the prior's variables).
    normalizer : Normalizer, optional
        The prior's normalisation (default: identity).
    noise_std : float or mapping variable -> float, optional
        Sensor noise std in physical units, overriding ``observations.noise_std``.
    case : int, optional
        For values ``(B, S, V)``: use one case; without it every case is kept (``y (B, K)``).

    Raises
    ------
    ValueError
        Unknown variables, sensors outside the domain, no values, a negative noise std.
    """
    variables = list(variables)
    unknown = [v for v in observations.variables if v not in variables]
    if unknown:
        raise ValueError(
            f"observed variable(s) {unknown} are not among the prior's variables {variables}"
        )
    if observations.values is None:
        raise ValueError("the observations hold sensor positions but no values")
    values = observations.values
    if case is None and values.ndim == 3 and len(values) == 1:
        case = 0
    if case is not None:
        if values.ndim != 3 or not 0 <= case < len(values):
            raise ValueError(f"case {case} does not exist in observations {observations!r}")
        values = values[case]
    _warn_empty_sensors(values)
    operator = observations.operator(grid, channels=variables)  # checks the domain
    channel = [variables.index(v) for v in observations.variables]
    shift, unit = _statistics(normalizer, variables, channel)
    stds = _noise_stds(observations, noise_std)
    observed = torch.isfinite(values).all(0) if values.ndim == 3 else torch.isfinite(values)
    if values.ndim == 3 and not (torch.isfinite(values) == observed).all():
        raise ValueError("cases must have the same missing (NaN) entries; split them")
    keep = torch.flatten(observed).nonzero().squeeze(-1)  # over (S * V)
    if keep.numel() == 0:
        raise ValueError("every observed value is NaN: nothing to condition on")
    normed = ((values - shift) / unit).flatten(-2)[..., keep]
    std = (stds / unit).expand(len(observations), -1).flatten()[keep]
    groups = torch.tensor(channel).expand(len(observations), -1).flatten()[keep]
    scale = unit.expand(len(observations), -1).flatten()[keep]

    kept = {}

    def gather(x: torch.Tensor) -> torch.Tensor:
        if x.device not in kept:
            kept[x.device] = keep.to(x.device)
        return operator(x).flatten(-2)[..., kept[x.device]]

    return Measurement(gather, normed, std, groups, variables, scale)


def _statistics(normalizer, variables, channel) -> tuple[torch.Tensor, torch.Tensor]:
    if normalizer is None:
        return torch.zeros(len(channel)), torch.ones(len(channel))
    if list(normalizer.variables) != list(variables):
        raise ValueError(
            f"normaliser variables {list(normalizer.variables)} differ from {list(variables)}"
        )
    mean = torch.tensor([normalizer.mean[c] for c in channel])
    std = torch.tensor([normalizer.std[c] for c in channel])
    return mean, std


def _noise_stds(observations: Observations, noise_std) -> torch.Tensor:
    names = observations.variables
    if noise_std is None:
        noise_std = observations.noise_std
    if isinstance(noise_std, Mapping):
        missing = [v for v in names if v not in noise_std]
        if missing:
            raise ValueError(f"noise_std gives no value for observed variable(s) {missing}")
        stds = [float(noise_std[v]) for v in names]
    else:
        stds = [float(noise_std)] * len(names)
    if not all(np.isfinite(s) and s >= 0 for s in stds):
        raise ValueError(f"noise std must be finite and >= 0, got {stds}")
    return torch.tensor(stds)


def _warn_empty_sensors(values: torch.Tensor) -> None:
    empty = ~torch.isfinite(values).any(-1)
    if values.ndim == 3:
        empty = empty.all(0)
    count = int(empty.sum())
    if count:
        warnings.warn(
            f"{count} sensor(s) have no finite value (NaN for every variable) and are dropped",
            stacklevel=3,
        )
