r"""Gaussian random fields with covariance :math:`C = \sigma^2 (-\Delta + \tau^2)^{-\alpha}`.

The covariance operator is diagonal in the Laplacian's eigenfunctions on the domain:
Fourier modes (periodic), sines (Dirichlet, :math:`u = 0` on the boundary) or cosines
(Neumann, :math:`\partial_n u = 0`). With wavenumber :math:`k` the eigenvalues are
:math:`\lambda(k) = \sigma^2 (|k|^2 + \tau^2)^{-\alpha}`, trace class iff
:math:`\alpha > d/2`.

On a grid we represent the *point values* of the continuous field at the nodes exactly
(up to truncating the sums below). Mode ``m`` of the grid's real transform (orthonormal
Hartley along periodic axes, orthonormal DST-I / scaled DCT-I along bounded axes) collects
every continuum mode that aliases onto it, so its variance is

.. math:: s_m = \frac{w_m}{h^d} \sum_{p \in \mathbb{Z}^d} \lambda(k_{m + p\,n}),

with :math:`k_{m + pn} = 2\pi (m + p n)/L` (periodic) or :math:`\pi (m + 2 p M)/L`
(bounded, :math:`M = n - 1`), :math:`h` the spacing and :math:`w_m` an end-point weight
(1/2 for the Neumann modes 0 and M, 0 for the Dirichlet ones). Because node values are
exact, a field sampled on a fine grid and restricted to the nodes of a coarse grid has the
coarse grid's covariance: samples are consistent across resolutions.

The images beyond ``|p| <= images`` per axis are not dropped: their sum is replaced by the
integral of :math:`\lambda` over the wavenumbers outside the box of summed images (the
midpoint rule on the alias lattice, with an error of second order in the lattice spacing
over the box size), so the node variance does not drift with the grid's resolution.

Sampling is ``u = T diag(sqrt(s)) xi`` with ``xi ~ N(0, I)`` and ``T`` the synthesis
transform, applied by FFT in O(N log N). Every synthesis matrix used here is symmetric
(Hartley, DST-I, and the cosine synthesis ``T_jm = sqrt(2/M) cos(pi j m / M)``), so the node
covariance is :math:`C = T S T` and its inverse :math:`C^{-1} = T^{-1} S^{-1} T^{-1}`;
along periodic and Dirichlet axes ``T`` is also orthogonal, so every power is
:math:`C^p = T S^p T`. The cosine synthesis is not orthogonal (the end nodes weigh half), so
with a Neumann axis only integer powers have this fast form. Compare the dense Cholesky
factorisation of an N x N covariance used by published function-space diffusion code:
O(N^3) time and O(N^2) memory.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import integrate, special

from sciml_diffusion.fields.grid import Grid

__all__ = ["GaussianRandomField", "BOUNDARIES"]

BOUNDARIES = ("periodic", "dirichlet", "neumann")

#: default number of alias images per side, by spatial dimension
_DEFAULT_IMAGES = {1: 64, 2: 6, 3: 2}


class GaussianRandomField:
    r"""Zero-mean Gaussian random field with covariance :math:`\sigma^2(-\Delta+\tau^2)^{-\alpha}`.

    Parameters
    ----------
    alpha : float
        Smoothness exponent; must exceed ``d / 2`` on a ``d``-dimensional grid.
    tau : float
        Inverse length scale (> 0).
    sigma : float
        Amplitude (> 0).
    boundary : str or sequence of str
        ``"periodic"``, ``"dirichlet"`` or ``"neumann"``, one for all axes or one per axis.
    images : int, optional
        Alias images per side summed into each grid mode (default 64 / 6 / 2 in 1-/2-/3-D).
    mean_zero : bool
        Remove the constant mode, so every sample has zero spatial mean (where the domain
        has a constant mode: periodic or Neumann on every axis). The Darcy coefficient
        generator of the FNO benchmarks does this before thresholding.

    Examples
    --------
    >>> grf = GaussianRandomField(alpha=2.0, tau=3.0)
    >>> grid = Grid.regular((64, 64), periodic=True)
    >>> grf.sample(grid, 4, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 64, 64])
    """

    def __init__(
        self,
        alpha: float,
        tau: float,
        sigma: float = 1.0,
        boundary: str | Sequence[str] = "periodic",
        images: int | None = None,
        mean_zero: bool = False,
    ):
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}; it is an inverse length scale")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if images is not None and images < 0:
            raise ValueError(f"images must be >= 0, got {images}")
        boundaries = (boundary,) if isinstance(boundary, str) else tuple(boundary)
        for b in boundaries:
            if b not in BOUNDARIES:
                raise ValueError(f"unknown boundary {b!r}; choose one of {BOUNDARIES}")
        self.alpha = float(alpha)
        self.tau = float(tau)
        self.sigma = float(sigma)
        self.boundary = boundaries[0] if len(boundaries) == 1 else boundaries
        self.images = images
        self.mean_zero = bool(mean_zero)
        self._cache: dict = {}

    def __repr__(self) -> str:
        return (
            f"GaussianRandomField(alpha={self.alpha}, tau={self.tau}, sigma={self.sigma}, "
            f"boundary={self.boundary!r}{', mean_zero=True' if self.mean_zero else ''})"
        )

    def to_dict(self) -> dict:
        """JSON-serialisable parameters (inverse: ``GaussianRandomField(**d)``)."""
        boundary = self.boundary if isinstance(self.boundary, str) else list(self.boundary)
        return {
            "alpha": self.alpha,
            "tau": self.tau,
            "sigma": self.sigma,
            "boundary": boundary,
            "images": self.images,
            "mean_zero": self.mean_zero,
        }

    # ------------------------------------------------------------------ spectrum
    def boundaries(self, grid: Grid) -> tuple[str, ...]:
        """The boundary condition of each axis of ``grid``."""
        if isinstance(self.boundary, str):
            return (self.boundary,) * grid.ndim
        if len(self.boundary) != grid.ndim:
            raise ValueError(
                f"{len(self.boundary)} boundary conditions given for a {grid.ndim}-D grid"
            )
        return self.boundary

    def eigenvalue(self, k2: torch.Tensor) -> torch.Tensor:
        r"""Operator eigenvalue :math:`\sigma^2 (|k|^2 + \tau^2)^{-\alpha}` at ``|k|^2``."""
        return self.sigma**2 * (k2 + self.tau**2) ** (-self.alpha)

    def spectrum(self, grid: Grid, device=None, dtype=torch.float32) -> torch.Tensor:
        """Variance of each mode of the grid transform, shape ``grid.shape``.

        For periodic and Dirichlet axes the transform is orthonormal, so these are the
        eigenvalues of the covariance matrix of the node values. Dirichlet end modes are 0.
        """
        self._check_alpha(grid)
        key = (grid.shape, grid.spacing, self.boundaries(grid), str(device), dtype)
        if key not in self._cache:
            self._cache[key] = self._spectrum(grid).to(device=device, dtype=dtype)
        return self._cache[key]

    def _spectrum(self, grid: Grid) -> torch.Tensor:
        images = self.images if self.images is not None else _DEFAULT_IMAGES.get(grid.ndim, 1)
        boundaries = self.boundaries(grid)
        per_axis = [
            _axis_wavenumbers(n, h, b, images)
            for n, h, b in zip(grid.shape, grid.spacing, boundaries)
        ]
        total = torch.zeros(grid.shape, dtype=torch.float64)
        for combo in itertools.product(*per_axis):
            k2 = sum(_broadcast(k**2, axis, grid.ndim) for axis, k in enumerate(combo))
            total += self.eigenvalue(k2)
        total += self._alias_tail(grid, images)
        for axis, (n, h, b) in enumerate(zip(grid.shape, grid.spacing, boundaries)):
            total = total * _broadcast(_axis_weights(n, b) / h, axis, grid.ndim)
        if self.mean_zero:
            total[(0,) * grid.ndim] = 0.0  # the constant mode (0 already for Dirichlet)
        return total

    def _alias_tail(self, grid: Grid, images: int) -> float:
        r"""Sum of :math:`\lambda` over the alias images outside ``|p_i| <= images``.

        The images of a mode lie on a lattice of spacing :math:`K_i = 2\pi / h_i` (``h`` the
        node spacing, on periodic and bounded axes alike); the sum over the images
        outside the box :math:`|k_i| \le (images + 1/2) K_i` is taken as the integral of
        :math:`\lambda` over that outside region divided by the cell volume
        :math:`\prod K_i`.
        """
        spacing = [2 * math.pi / h for h in grid.spacing]
        half_widths = [(images + 0.5) * k for k in spacing]
        outside = _outside_box_integral(half_widths, self.tau**2, self.alpha)
        return self.sigma**2 * outside / math.prod(spacing)

    def _check_alpha(self, grid: Grid) -> None:
        if not self.alpha > grid.ndim / 2:
            raise ValueError(
                f"alpha={self.alpha} must exceed d/2={grid.ndim / 2} on a {grid.ndim}-D grid, "
                "otherwise the field has infinite pointwise variance; increase alpha"
            )

    # ------------------------------------------------------------------ transforms
    def from_modes(self, coeffs: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Synthesis ``T c``: mode coefficients ``(..., *grid.shape)`` to node values."""
        return self._transform(coeffs, grid, inverse=False)

    def to_modes(self, values: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Analysis ``T^{-1} u``: node values ``(..., *grid.shape)`` to mode coefficients."""
        return self._transform(values, grid, inverse=True)

    def _transform(self, x: torch.Tensor, grid: Grid, inverse: bool) -> torch.Tensor:
        _check_shape(x, grid)
        out = x
        for axis, b in enumerate(self.boundaries(grid)):
            dim = x.ndim - grid.ndim + axis
            if b == "periodic":
                out = _hartley(out, dim)
            elif b == "dirichlet":
                out = _dst1(out, dim)
            else:
                out = _dct1_analysis(out, dim) if inverse else _dct1_synthesis(out, dim)
        return out

    def apply_sqrt(self, white: torch.Tensor, grid: Grid) -> torch.Tensor:
        """``L w`` with ``L = T S^{1/2}`` (``L L^T = C``): white noise ``(..., *grid.shape)``
        to a field sample."""
        _check_shape(white, grid)
        s = self.spectrum(grid, device=white.device, dtype=white.dtype)
        return self.from_modes(white * s.sqrt(), grid)

    def apply_inverse_sqrt(self, field: torch.Tensor, grid: Grid) -> torch.Tensor:
        """``L^{-1} u = S^{-1/2} T^{-1} u``: whiten a field ``(..., *grid.shape)``.

        ``|L^{-1} u|^2 = u^T C^{-1} u``; null modes (``s = 0``) map to 0.
        """
        _check_shape(field, grid)
        s = self.spectrum(grid, device=field.device, dtype=field.dtype)
        return self.to_modes(field, grid) * _power(s, -0.5)

    def apply_covariance(self, field: torch.Tensor, grid: Grid, power: float = 1.0):
        """``C^p u`` for the node covariance ``C = T S T`` of the samples.

        Parameters
        ----------
        field : torch.Tensor ``(..., *grid.shape)``
        power : float
            Any real power along periodic and Dirichlet axes (``T`` orthogonal:
            ``C^p = T S^p T``); an integer where an axis is Neumann
            (``C^{-1} = T^{-1} S^{-1} T^{-1}``). Negative powers invert on the live modes
            only (null modes, ``s = 0``, map to 0).
        """
        _check_shape(field, grid)
        s = self.spectrum(grid, device=field.device, dtype=field.dtype)
        if "neumann" not in self.boundaries(grid):
            return self.from_modes(self.from_modes(field, grid) * _power(s, power), grid)
        if power != int(power):
            raise ValueError(
                f"power {power} of a covariance with a Neumann axis has no fast form (its "
                "cosine synthesis is not orthogonal); use an integer power, or apply_sqrt / "
                "apply_inverse_sqrt for a factor L with L L^T = C"
            )
        transform = self.from_modes if power > 0 else self.to_modes
        scale = _power(s, 1.0 if power > 0 else -1.0)
        out = field
        for _ in range(abs(int(power))):
            out = transform(transform(out, grid) * scale, grid)
        return out

    def node_variance(self, grid: Grid, dtype=torch.float64) -> torch.Tensor:
        """Variance of every node, ``diag(C)``, shape ``grid.shape``.

        ``diag(T S T)_j = sum_m (T_jm)^2 s_m``: the squared synthesis matrix of each axis is
        applied to the spectrum (O(N n) for ``n`` nodes per axis).
        """
        out = self.spectrum(grid, dtype=torch.float64)
        for axis, n in enumerate(grid.shape):
            eye = torch.eye(n, dtype=torch.float64)
            squared = self._axis_synthesis(eye, axis, grid).pow(2)  # (m, j) = T_jm^2
            out = torch.tensordot(out, squared, dims=([axis], [0])).movedim(-1, axis)
        return out.to(dtype)

    def mean_variance(self, grid: Grid) -> float:
        """Mean node variance ``tr(C) / N`` on ``grid`` itself."""
        out = self.spectrum(grid, dtype=torch.float64)
        for axis, n in enumerate(grid.shape):
            eye = torch.eye(n, dtype=torch.float64)
            norms = self._axis_synthesis(eye, axis, grid).pow(2).sum(-1)  # sum_j T_jm^2
            out = out * _broadcast(norms, axis, grid.ndim)
        return float(out.sum() / grid.size)

    def _axis_synthesis(self, x: torch.Tensor, axis: int, grid: Grid) -> torch.Tensor:
        """The synthesis transform of one axis applied along the last dim of ``x``."""
        b, dim = self.boundaries(grid)[axis], x.ndim - 1
        if b == "periodic":
            return _hartley(x, dim)
        if b == "dirichlet":
            return _dst1(x, dim)
        return _dct1_synthesis(x, dim)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        grid: Grid,
        n: int = 1,
        generator: torch.Generator | None = None,
        device=None,
        dtype=torch.float32,
    ) -> torch.Tensor:
        """Draw ``n`` independent fields on ``grid``: tensor ``(n, *grid.shape)``."""
        if n < 1:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        gen_device = generator.device if generator is not None else device
        white = torch.randn((n, *grid.shape), generator=generator, device=gen_device, dtype=dtype)
        return self.apply_sqrt(white.to(device) if device is not None else white, grid)


def _axis_wavenumbers(n: int, h: float, boundary: str, images: int) -> list[torch.Tensor]:
    """Per alias image ``p``, the wavenumbers of the continuum modes aliasing onto 0..n-1."""
    m = torch.arange(n, dtype=torch.float64)
    if boundary == "periodic":
        length = n * h
        m = torch.where(m < (n + 1) // 2, m, m - n)
        return [2 * math.pi * (m + p * n) / length for p in range(-images, images + 1)]
    M = n - 1
    length = M * h
    return [math.pi * (m + 2 * p * M) / length for p in range(-images, images + 1)]


def _axis_weights(n: int, boundary: str) -> torch.Tensor:
    w = torch.ones(n, dtype=torch.float64)
    if boundary == "dirichlet":
        w[0] = w[-1] = 0.0
    elif boundary == "neumann":
        w[0] = w[-1] = 0.5
    return w


def _power(s: torch.Tensor, p: float) -> torch.Tensor:
    """``s^p`` on the live modes (``s > 0``), 0 on null modes."""
    return torch.where(s > 0, s.clamp_min(torch.finfo(s.dtype).tiny) ** p, 0)


def _outside_box_integral(half_widths: Sequence[float], c: float, alpha: float) -> float:
    r"""``\int (|k|^2 + c)^{-alpha} dk`` over :math:`\mathbb R^d` minus the box
    :math:`|k_i| \le b_i`.

    Split on the first axis: where :math:`|k_1| > b_1` the other axes integrate in closed
    form, :math:`\int_{\mathbb R^m} (|k'|^2 + c')^{-\alpha} dk' =
    \pi^{m/2} \Gamma(\alpha - m/2) / \Gamma(\alpha)\, c'^{m/2 - \alpha}`; where
    :math:`|k_1| \le b_1` the rest is the same problem in one dimension less, with
    :math:`c' = c + k_1^2`. The tail in :math:`k_1` is an incomplete beta function; the
    integral over :math:`|k_1| \\le b_1` is by adaptive quadrature.
    """
    if not half_widths:
        return 0.0
    b, rest = half_widths[0], half_widths[1:]
    m = len(rest)
    beta = alpha - m / 2  # the exponent left after integrating out the other axes
    # int_b^inf (k^2 + c)^-beta dk
    #   = c^(1/2-beta) B(beta-1/2, 1/2) I_{c/(b^2+c)}(beta-1/2, 1/2) / 2,
    # summed in logs: each factor alone over- or underflows for large alpha
    a = beta - 0.5
    with np.errstate(divide="ignore"):
        log_fraction = np.log(special.betainc(a, 0.5, c / (b * b + c)))
    log_beyond = (
        (m / 2) * math.log(math.pi) + math.lgamma(beta) - math.lgamma(alpha)
        + (0.5 - beta) * math.log(c) + special.betaln(a, 0.5) + log_fraction - math.log(2)
    )  # fmt: skip
    beyond = float(np.exp(log_beyond))
    inside = 0.0
    if rest:
        inside, _ = integrate.quad(
            lambda k: _outside_box_integral(rest, c + k * k, alpha),
            0,
            b,
            epsabs=0,
            epsrel=1e-8,
        )
    return 2 * (beyond + inside)


def _broadcast(v: torch.Tensor, axis: int, ndim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def _check_shape(x: torch.Tensor, grid: Grid) -> None:
    if tuple(x.shape[-grid.ndim :]) != grid.shape:
        raise ValueError(
            f"tensor of shape {tuple(x.shape)} does not end with the grid shape {grid.shape}"
        )


def _hartley(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Orthonormal discrete Hartley transform along ``dim`` (its own inverse)."""
    spec = torch.fft.fft(x, dim=dim, norm="ortho")
    return (spec.real - spec.imag).to(x.dtype)


def _dst1(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Orthonormal DST-I on the interior nodes along ``dim`` (its own inverse); 0 at ends."""
    n = x.shape[dim]
    M = n - 1
    inner = x.narrow(dim, 1, n - 2)
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    odd = torch.cat([zero, inner, zero, -inner.flip(dim)], dim=dim)
    spec = torch.fft.fft(odd, dim=dim).narrow(dim, 0, n)
    out = -spec.imag * (0.5 * math.sqrt(2.0 / M))
    edge = torch.zeros_like(out.narrow(dim, 0, 1))
    return torch.cat([edge, out.narrow(dim, 1, n - 2), edge], dim=dim).to(x.dtype)


def _dct1(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Unnormalised DCT-I: ``X_j = x_0 + (-1)^j x_M + 2 sum_{m=1}^{M-1} x_m cos(pi j m / M)``."""
    n = x.shape[dim]
    even = torch.cat([x, x.narrow(dim, 1, n - 2).flip(dim)], dim=dim)
    return torch.fft.fft(even, dim=dim).narrow(dim, 0, n).real.to(x.dtype)


def _end_weights(x: torch.Tensor, dim: int, end: float) -> torch.Tensor:
    w = torch.ones(x.shape[dim], dtype=x.dtype, device=x.device)
    w[0] = w[-1] = end
    return w.reshape([-1 if d == dim else 1 for d in range(x.ndim)])


def _dct1_synthesis(c: torch.Tensor, dim: int) -> torch.Tensor:
    """``u_j = sqrt(2/M) sum_m c_m cos(pi j m / M)`` along ``dim``."""
    M = c.shape[dim] - 1
    return _dct1(c * _end_weights(c, dim, 2.0), dim) * (0.5 * math.sqrt(2.0 / M))


def _dct1_analysis(u: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`_dct1_synthesis`: ``c = sqrt(2/M) W DCT1(u) / 2``.

    ``W = diag(1/2, 1, ..., 1, 1/2)`` are the end-point weights.
    """
    M = u.shape[dim] - 1
    return _dct1(u, dim) * _end_weights(u, dim, 0.5) * (0.5 * math.sqrt(2.0 / M))
