r"""What every guidance method shares: the sampler interface, counters, the function-space
preconditioning and the PDE-residual term.

A guidance method is an object the samplers of :mod:`sciml_diffusion.diffusion.samplers`
accept as ``guidance=``: ``wrap(denoiser)`` returns the denoiser the sampler calls, and
``__call__(x_next, *, x, denoised, sigma, sigma_next, index)`` corrects each step (with
``differentiable = True`` the sampler records the step so the hook can take
:math:`\nabla_x` of a loss on ``denoised``). So every sampler takes every method.

Function space. With GRF noise :math:`n \sim \mathcal N(0, C)`, Tweedie's formula reads
:math:`D(x, \sigma) = x + \sigma^2 C \nabla_x \log p_\sigma(x)`: a score enters the state
only through :math:`C`. The posterior denoiser therefore adds
:math:`\sigma^2 C \nabla_x \log p(y \mid x_\sigma)`, and the gradient-based methods here
precondition their loss gradients by :math:`C` likewise (``precondition=True``): the
correction is a smooth field in the Cameron–Martin space of the noise instead of a sum of
spikes at the sensor nodes, and it is the same on every grid of the domain. With white
noise :math:`C = I` and nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from sciml_diffusion.diffusion.noise import NoiseProcess, WhiteNoise
from sciml_diffusion.fields import Grid, Normalizer
from sciml_diffusion.inverse.operators import Measurement

__all__ = ["Guidance", "PDETerm", "per_group"]


class Guidance:
    """Base of the guidance methods: no correction, counts denoiser evaluations.

    Parameters
    ----------
    measurement : Measurement
        Observation operator, data and noise on normalised fields.
    noise : NoiseProcess, optional
        The prior's noise process (for the function-space preconditioning).
    grid : Grid, optional
        Grid of the sampled fields.
    precondition : bool
        Multiply loss gradients by the noise covariance ``C`` (see the module docstring).

    Attributes
    ----------
    evaluations : int
        Denoiser calls so far (each on the whole batch): the NFE per member.
    vjps : int
        Vector–Jacobian products through the denoiser so far (backward passes).
    """

    differentiable = False
    name = "none"

    def __init__(
        self,
        measurement: Measurement,
        noise: NoiseProcess | None = None,
        grid: Grid | None = None,
        precondition: bool = True,
    ):
        self.measurement = measurement
        self.noise = noise if noise is not None else WhiteNoise()
        self.grid = grid
        self.preconditioned = precondition and not isinstance(self.noise, WhiteNoise)
        if self.preconditioned and grid is None:
            raise ValueError("preconditioning by a GRF noise covariance needs the grid")
        self.evaluations = 0
        self.vjps = 0

    def wrap(self, denoiser):
        """The denoiser, counting its calls."""

        def counted(x, sigma):
            self.evaluations += 1
            return denoiser(x, sigma)

        return counted

    def __call__(self, x_next, *, x, denoised, sigma, sigma_next, index):
        return x_next

    def precondition(self, gradient: torch.Tensor) -> torch.Tensor:
        """``C g`` for GRF noise with ``precondition=True``, else ``g``; ``(B, C, *spatial)``."""
        if not self.preconditioned:
            return gradient
        return self.noise.apply_covariance(gradient, self.grid)

    def gradient(self, loss: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``d loss.sum() / dx`` (members are independent, so the sum separates), counted."""
        self.vjps += 1
        return torch.autograd.grad(loss.sum(), x)[0]

    def options(self) -> dict:
        """The method's settings, recorded in a reconstruction's attributes."""
        return {}


class PDETerm:
    """The discrete PDE residual of normalised fields, in physical units.

    Parameters
    ----------
    problem : pdes.Problem
        Has ``variables`` and ``residual(fields, grid)``.
    variables : sequence of str
        Channel order of the normalised fields (the prior's variables).
    normalizer : Normalizer
        The prior's normalisation.
    grid : Grid
        Grid of the fields.

    Raises
    ------
    ValueError
        If the problem's variables are not all channels of the prior.
    """

    def __init__(self, problem, variables: Sequence[str], normalizer: Normalizer, grid: Grid):
        names = [v.name for v in problem.variables]
        missing = [v for v in names if v not in variables]
        if missing:
            raise ValueError(
                f"the {problem.name} PDE needs variable(s) {missing}, which the prior "
                f"(variables {list(variables)}) does not have"
            )
        self.problem, self.variables, self.normalizer, self.grid = (
            problem,
            list(variables),
            normalizer,
            grid,
        )
        self.channels = [self.variables.index(v) for v in names]
        self.names = names

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Residual of normalised fields ``(B, C, *spatial)``: ``(B, ...)``."""
        fields = self.normalizer.denormalize(x)
        parts = {name: fields[:, c] for name, c in zip(self.names, self.channels)}
        return self.problem.residual(parts, self.grid)


def per_group(values: torch.Tensor, measurement: Measurement, weights) -> torch.Tensor:
    """``sum_g w_g * sum_{k in g} values_k / n_g``: per-variable mean of ``values (B, K)``.

    ``weights`` is a float (every group) or a mapping group name -> weight (default 0).
    """
    groups = measurement.groups.to(values.device)
    total = values.new_zeros(values.shape[0])
    for g in measurement.group_ids:
        weight = _weight(weights, measurement.names[g])
        if weight:
            chosen = groups == g
            total = total + weight * values[:, chosen].sum(-1) / chosen.sum()
    return total


def _weight(weights, name: str) -> float:
    if isinstance(weights, Mapping):
        return float(weights.get(name, 0.0))
    return float(weights)
