r"""Noise processes for the forward diffusion :math:`x_\sigma = x + \sigma n`.

Three processes share one interface:

- :class:`WhiteNoise`: :math:`n \sim \mathcal N(0, I)` independently at every node, the
  classic (finite-dimensional) diffusion model of Karras et al. (2022, EDM).
- :class:`GRFNoise`: :math:`n \sim \mathcal N(0, C)` with :math:`C` the covariance of a
  Gaussian random field :math:`\sigma^2(-\Delta + \tau^2)^{-\alpha}` evaluated at the grid
  nodes (:class:`~sciml_diffusion.fields.GaussianRandomField`). Because the node values of
  the field are exact on any grid, the forward process, hence the learned score, is the same
  on every grid of the domain: the noise lives in function space (Lim et al. 2023,
  "Score-based diffusion models in function space"; Yao et al. 2025, FunDPS). The
  theory's guarantees further need the data in the noise's Cameron–Martin space, which
  rough data (a two-phase Darcy permeability) are not: see ``docs/priors.md``.
- :class:`StationaryGRFNoise`: the same field, periodic on a box of twice the domain's
  length along bounded axes and cropped, so its covariance depends on :math:`x - y` only
  and every node has the same variance (the Neumann :class:`GRFNoise` has 2x on edges,
  4x in corners).

With covariance :math:`C` the probability-flow ODE is :math:`dx/d\sigma = (x - D(x,\sigma))/\sigma`
for either process (Tweedie: :math:`D = x + \sigma^2 C \nabla \log p_\sigma`), so the
deterministic samplers need no change; stochastic samplers and guidance draw from, or
apply, :math:`C^{1/2}`, :math:`C^{p}`.

Random draws take either one ``torch.Generator`` for the whole batch or a list of
generators, one per leading batch index ("member"): member ``b`` then only ever reads its
own generator, so its draws do not depend on the batch it is computed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sciml_diffusion.fields import GaussianRandomField, Grid

__all__ = [
    "NoiseProcess",
    "WhiteNoise",
    "GRFNoise",
    "StationaryGRFNoise",
    "randn",
    "noise_from_dict",
]

Generators = torch.Generator | Sequence[torch.Generator] | None


def randn(shape, generator: Generators = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal tensor of ``shape``; with a list of generators, one per ``shape[0]``.

    Parameters
    ----------
    shape : tuple of int
        ``(B, *)``.
    generator : torch.Generator or list of B torch.Generator, optional
        One generator per member makes member ``b`` reproducible whatever ``B``.
    """
    shape = tuple(shape)
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        out = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
        return out.to(device) if device is not None else out
    if len(generator) != shape[0]:
        raise ValueError(
            f"{len(generator)} generators given for a batch of {shape[0]}; pass one per member"
        )
    draws = [torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]
    out = torch.stack(draws)
    return out.to(device) if device is not None else out


class NoiseProcess:
    """Interface of a zero-mean Gaussian noise process on the nodes of a grid.

    Every method acts on tensors ``(..., *grid.shape)``: the last ``grid.ndim`` dims are
    spatial, the leading ones (batch, channels) are independent copies.
    """

    def sample(self, shape, grid: Grid, generator: Generators = None, device=None):
        """A draw ``n ~ N(0, C)`` of ``shape = (B, ..., *grid.shape)``."""
        _check_shape(shape, grid)
        leading = tuple(shape)[: len(shape) - grid.ndim]
        white = randn((*leading, *self.white_shape(grid)), generator, device=device)
        return self.apply_sqrt(white, grid)

    def white_shape(self, grid: Grid) -> tuple[int, ...]:
        """Spatial shape of the white noise :meth:`apply_sqrt` takes (the grid's, by default)."""
        return grid.shape

    def apply_sqrt(self, white: torch.Tensor, grid: Grid) -> torch.Tensor:
        """``L w`` for a factor ``L L^T = C``; ``w`` of shape ``(..., *white_shape(grid))``."""
        raise NotImplementedError

    def apply_inverse_sqrt(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """``L^+ x`` (a whitening: ``|L^+ x|^2 = x^T C^{-1} x``)."""
        raise NotImplementedError

    def apply_covariance(self, x: torch.Tensor, grid: Grid, power: float = 1.0) -> torch.Tensor:
        """``C^p x``; ``power=-1`` applies the precision."""
        raise NotImplementedError

    def variance(self, grid: Grid) -> float:
        """Mean variance of one node, ``tr(C) / N``."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """JSON description; inverse :func:`noise_from_dict`."""
        raise NotImplementedError


class WhiteNoise(NoiseProcess):
    """Independent standard normal noise at every node, ``C = I``."""

    def apply_sqrt(self, white, grid):
        return white

    def apply_inverse_sqrt(self, x, grid):
        return x

    def apply_covariance(self, x, grid, power=1.0):
        return x

    def variance(self, grid):
        return 1.0

    def to_dict(self):
        return {"kind": "white"}

    def __repr__(self):
        return "WhiteNoise()"


class GRFNoise(NoiseProcess):
    r"""Gaussian-random-field noise, ``C`` the node covariance of ``field``.

    Parameters
    ----------
    field : GaussianRandomField
        The covariance :math:`\sigma^2(-\Delta+\tau^2)^{-\alpha}`; use :meth:`unit_variance`
        to scale it so a node has variance one, the scale the EDM preconditioning assumes.
    """

    def __init__(self, field: GaussianRandomField):
        self.field = field

    @classmethod
    def unit_variance(cls, grid: Grid, alpha: float, tau: float, boundary=None) -> GRFNoise:
        """A GRF noise whose mean node variance on ``grid`` is one.

        ``boundary`` defaults to periodic along periodic axes and Neumann (cosine modes,
        free boundary values) along bounded ones.
        """
        if boundary is None:
            boundary = ["periodic" if p else "neumann" for p in grid.periodic]
        unscaled = GaussianRandomField(alpha=alpha, tau=tau, boundary=boundary)
        scale = GRFNoise(unscaled).variance(grid) ** -0.5
        return cls(GaussianRandomField(alpha=alpha, tau=tau, sigma=scale, boundary=boundary))

    def apply_sqrt(self, white, grid):
        return self.field.apply_sqrt(white, grid)

    def apply_inverse_sqrt(self, x, grid):
        return self.field.apply_inverse_sqrt(x, grid)

    def apply_covariance(self, x, grid, power=1.0):
        return self.field.apply_covariance(x, grid, power)

    def variance(self, grid):
        return self.field.mean_variance(grid)

    def to_dict(self):
        return {"kind": "grf", **self.field.to_dict()}

    def __repr__(self):
        return f"GRFNoise({self.field!r})"


class StationaryGRFNoise(NoiseProcess):
    r"""Stationary GRF noise on any domain: a periodic field on a doubled box, cropped.

    Along a bounded axis of ``n`` nodes (spacing ``h``, length ``L``) the noise is the
    periodic field of covariance :math:`\sigma^2(-\Delta+\tau^2)^{-\alpha}` on a box of
    length ``2L`` (``2(n - 1)`` nodes, the same spacing), restricted to the ``n`` nodes of
    the domain; periodic axes stay periodic. Its covariance :math:`c(x - y)` depends on the
    separation only, so every node has the same variance, where the Neumann field of
    :class:`GRFNoise` sees its mirror image in each wall (2x the variance on edges, 4x in
    corners). Node values are exact (:class:`~sciml_diffusion.fields.GaussianRandomField`),
    so the process is the same on every grid of the domain; sampling is one FFT on the box,
    O(N log N).

    The factor ``L = P T S^{1/2}`` (``T`` the box's Hartley synthesis, ``P`` the crop) maps
    white noise on the box to the domain: :meth:`apply_sqrt` takes ``(..., *white_shape)``
    and :meth:`apply_inverse_sqrt` returns the minimum-norm preimage ``L^+ x`` there.
    :math:`C x = P C_\mathrm{box} P^T x` is exact; :math:`C^{-1} x` is solved by conjugate
    gradients, preconditioned with the box's precision.

    Parameters
    ----------
    field : GaussianRandomField
        With periodic boundaries (the box's).
    """

    def __init__(self, field: GaussianRandomField, tol: float = 1e-10, max_iter: int = 1000):
        if field.boundary != "periodic":
            raise ValueError(
                f"the stationary noise embeds the domain in a periodic box: give a periodic "
                f"field, got boundary {field.boundary!r}"
            )
        self.field, self.tol, self.max_iter = field, tol, max_iter

    @classmethod
    def unit_variance(cls, grid: Grid, alpha: float, tau: float) -> StationaryGRFNoise:
        """A stationary GRF noise whose node variance is one (at every node)."""
        scale = cls(GaussianRandomField(alpha=alpha, tau=tau)).variance(grid) ** -0.5
        return cls(GaussianRandomField(alpha=alpha, tau=tau, sigma=scale))

    def box(self, grid: Grid) -> Grid:
        """The periodic grid the noise is drawn on: bounded axes doubled, same spacing."""
        shape = [n if p else 2 * (n - 1) for n, p in zip(grid.shape, grid.periodic)]
        lengths = [L if p else 2 * L for L, p in zip(grid.lengths, grid.periodic)]
        origin = [c[0] for c in grid.coords]
        return Grid.regular(shape, lengths=lengths, periodic=True, origin=origin, axes=grid.axes)

    def white_shape(self, grid):
        return self.box(grid).shape

    def _crop(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        index = (Ellipsis, *[slice(0, n) for n in grid.shape])
        return x[index]

    def _pad(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        box = self.box(grid)
        out = x.new_zeros((*x.shape[: x.ndim - grid.ndim], *box.shape))
        out[(Ellipsis, *[slice(0, n) for n in grid.shape])] = x
        return out

    def apply_sqrt(self, white, grid):
        box = self.box(grid)
        return self._crop(self.field.apply_sqrt(white, box), grid)

    def apply_inverse_sqrt(self, x, grid):
        box = self.box(grid)
        dual = self._pad(self.apply_covariance(x, grid, -1.0), grid)  # P^T C^-1 x
        return (
            self.field.from_modes(dual, box)
            * self.field.spectrum(box, device=x.device, dtype=x.dtype).sqrt()
        )  # S^{1/2} T^T P^T C^{-1} x, T symmetric

    def apply_covariance(self, x, grid, power=1.0):
        if power != int(power):
            raise ValueError(
                f"power {power} of the cropped stationary covariance has no fast form; use "
                "an integer power, or apply_sqrt / apply_inverse_sqrt"
            )
        apply = self._covariance if power > 0 else self._precision
        for _ in range(abs(int(power))):
            x = apply(x, grid)
        return x

    def _covariance(self, x, grid):
        box = self.box(grid)
        return self._crop(self.field.apply_covariance(self._pad(x, grid), box), grid)

    def _precision(self, b, grid):
        """``C^{-1} b`` by preconditioned conjugate gradients, batched over leading dims."""
        box = self.box(grid)
        dims = tuple(range(b.ndim - grid.ndim, b.ndim))

        def precondition(r):
            return self._crop(self.field.apply_covariance(self._pad(r, grid), box, -1.0), grid)

        x = torch.zeros_like(b)
        r = b.clone()
        z = precondition(r)
        p = z.clone()
        rz = (r * z).sum(dims, keepdim=True)
        norm_b = b.pow(2).sum(dims, keepdim=True).sqrt().clamp_min(torch.finfo(b.dtype).tiny)
        for _ in range(self.max_iter):
            cp = self._covariance(p, grid)
            step = rz / (p * cp).sum(dims, keepdim=True).clamp_min(torch.finfo(b.dtype).tiny)
            x = x + step * p
            r = r - step * cp
            if (r.pow(2).sum(dims, keepdim=True).sqrt() / norm_b).max() < self.tol:
                return x
            z = precondition(r)
            rz_new = (r * z).sum(dims, keepdim=True)
            p = z + (rz_new / rz) * p
            rz = rz_new
        raise RuntimeError(
            f"conjugate gradients did not reach tolerance {self.tol} in {self.max_iter} "
            "iterations; compute in float64 or raise max_iter"
        )

    def variance(self, grid):
        return self.field.mean_variance(self.box(grid))

    def to_dict(self):
        return {"kind": "grf_stationary", **self.field.to_dict()}

    def __repr__(self):
        return f"StationaryGRFNoise({self.field!r})"


def noise_from_dict(data: dict) -> NoiseProcess:
    """Rebuild a noise process from :meth:`NoiseProcess.to_dict`."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind == "white":
        return WhiteNoise()
    if kind == "grf":
        return GRFNoise(GaussianRandomField(**data))
    if kind == "grf_stationary":
        return StationaryGRFNoise(GaussianRandomField(**data))
    raise ValueError(
        f"unknown noise process {kind!r}; expected 'white', 'grf' or 'grf_stationary'"
    )


def _check_shape(shape, grid: Grid) -> None:
    if tuple(shape[-grid.ndim :]) != grid.shape or len(shape) <= grid.ndim:
        raise ValueError(
            f"noise shape {tuple(shape)} must be (batch, ..., *{grid.shape}) for grid {grid}"
        )
