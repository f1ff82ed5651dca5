r"""Moment-matching posterior sampling, MMPS (Rozet et al. 2024, "Learning diffusion priors
from observations by expectation maximization", section 4).

MMPS replaces the prior denoiser by a posterior denoiser. With the Gaussian approximation
:math:`p(x_0 \mid x_\sigma) \approx \mathcal N(\hat x_0, V)`, :math:`\hat x_0 = D(x_\sigma,
\sigma)` and Tweedie's covariance

.. math:: V = \mathrm{Cov}[x_0 \mid x_\sigma] = \sigma^2\, \frac{\partial D}{\partial x}\, C
          = \sigma^2\, C\, \Big(\frac{\partial D}{\partial x}\Big)^{\!\top}

(``C`` the noise covariance; the two forms agree for an exact denoiser, whose Jacobian is
:math:`C`-symmetric), the posterior mean given :math:`y = A x_0 + \varepsilon`,
:math:`\varepsilon \sim \mathcal N(0, \Sigma_y)` is

.. math:: E[x_0 \mid x_\sigma, y] \approx \hat x_0 + V A^\top
          (\Sigma_y + A V A^\top)^{-1} (y - A \hat x_0).

``V v`` costs one vector–Jacobian product through the denoiser; the ``K x K`` system is
solved by a few Krylov iterations (each one VJP), batched over members: GMRES by default,
because a trained network's Jacobian is not exactly symmetric and the system then is not
positive definite (conjugate gradients, ``solver="cg"``, can diverge there; with an exact
denoiser both converge). For a
Gaussian prior with its exact denoiser and enough iterations this *is* the posterior
denoiser, so any sampler then samples the exact posterior (verified in the tests). For a
nonlinear ``A`` it is linearised at :math:`\hat x_0`. Needs :math:`\Sigma_y > 0`.
"""

from __future__ import annotations

import torch

from sciml_diffusion.inverse.guidance.base import Guidance

__all__ = ["MMPS", "conjugate_gradient", "gmres"]


def conjugate_gradient(matvec, b: torch.Tensor, iterations: int) -> torch.Tensor:
    """``iterations`` CG steps on ``M w = b`` per row of ``b (B, K)``, from ``w = 0``.

    ``M`` (applied by ``matvec``) must be symmetric positive definite for each row. A fixed
    number of iterations and no data-dependent branch keeps the loop on the device.
    """
    w = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = (r * r).sum(-1, keepdim=True)
    tiny = torch.finfo(b.dtype).tiny
    for _ in range(iterations):
        mp = matvec(p)
        curvature = (p * mp).sum(-1, keepdim=True)
        alpha = torch.where(curvature > 0, rr / curvature.clamp_min(tiny), 0.0)
        w = w + alpha * p
        r = r - alpha * mp
        rr_next = (r * r).sum(-1, keepdim=True)
        p = r + torch.where(rr > 0, rr_next / rr.clamp_min(tiny), 0.0) * p
        rr = rr_next
    return w


def gmres(matvec, b: torch.Tensor, iterations: int) -> torch.Tensor:
    """``iterations`` steps of GMRES on ``M w = b`` per row of ``b (B, K)``, from ``w = 0``.

    Arnoldi with modified Gram–Schmidt builds an orthonormal Krylov basis ``Q`` and the
    Hessenberg matrix ``H``; ``w = Q y`` with ``y`` minimising ``||beta e_1 - H y||`` (a small
    batched least-squares solve). ``M`` may be non-symmetric. Works in float64; a fixed
    number of iterations keeps the loop on the device.
    """
    dtype = b.dtype
    r = b.double()
    eps = torch.finfo(torch.float64).eps
    beta = r.norm(dim=-1, keepdim=True)
    basis = [r / beta.clamp_min(eps)]
    hessenberg = r.new_zeros(r.shape[0], iterations + 1, iterations)
    for j in range(iterations):
        v = matvec(basis[j].to(dtype)).double()
        for i, q in enumerate(basis):
            h = (v * q).sum(-1)
            hessenberg[:, i, j] = h
            v = v - h[:, None] * q
        norm = v.norm(dim=-1)
        hessenberg[:, j + 1, j] = norm
        basis.append(v / norm[:, None].clamp_min(eps))
    target = r.new_zeros(r.shape[0], iterations + 1)
    target[:, 0] = beta[:, 0]
    y = torch.linalg.lstsq(hessenberg, target[..., None]).solution[..., 0]  # (B, n)
    w = torch.stack(basis[:iterations], dim=-1) @ y[..., None]
    return w[..., 0].to(dtype)


class MMPS(Guidance):
    """The MMPS posterior denoiser.

    Parameters
    ----------
    measurement : Measurement
        Must have a positive noise std.
    iterations : int
        Krylov iterations per denoiser call (Rozet et al. use 1–5).
    solver : str
        ``"gmres"`` (default, any network) or ``"cg"`` (symmetric Jacobians, e.g. exact).
    noise, grid
        The prior's noise process and the grid (``C`` in ``V``).
    """

    name = "mmps"

    def __init__(
        self, measurement, iterations: int = 5, solver: str = "gmres", noise=None, grid=None
    ):
        super().__init__(measurement, noise, grid, precondition=True)
        measurement.require_noise("MMPS")
        if solver not in ("gmres", "cg"):
            raise ValueError(f"unknown MMPS solver {solver!r}; choose 'gmres' or 'cg'")
        self.solver = solver
        if iterations < 1:
            raise ValueError(f"MMPS needs at least 1 CG iteration, got {iterations}")
        self.iterations = int(iterations)

    def wrap(self, denoiser):
        def posterior(x, sigma):
            self.evaluations += 1
            return self.posterior_mean(denoiser, x, sigma)

        return posterior

    def posterior_mean(self, denoiser, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``E[x_0 | x_sigma = x, y]`` under the Gaussian approximation, ``(B, C, *spatial)``."""
        m = self.measurement
        gamma = sigma.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1))) ** 2
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            estimate = denoiser(x, sigma)
            predicted = m(estimate)
        y = m.y.to(x.device, predicted.dtype)
        noise_var = m.std.to(x.device, predicted.dtype) ** 2

        def cov_x(field):  # V field = sigma^2 C J^T field
            self.vjps += 1
            pulled = torch.autograd.grad(estimate, x, field, retain_graph=True)[0]
            return gamma * self.precondition(pulled)

        def adjoint(w):  # A^T w at the estimate
            return torch.autograd.grad(predicted, estimate, w, retain_graph=True)[0]

        def forward(field):  # A field (A linearised at the estimate)
            return torch.func.jvp(m.operator, (estimate.detach(),), (field,))[1]

        def system(w):
            return noise_var * w + forward(cov_x(adjoint(w)))

        with torch.enable_grad():
            solve = gmres if self.solver == "gmres" else conjugate_gradient
            w = solve(system, (y - predicted).detach(), self.iterations)
            self.vjps += 1
            pulled = torch.autograd.grad(predicted, x, w)[0]
        return (estimate + gamma * self.precondition(pulled)).detach()

    def options(self) -> dict:
        return {"iterations": self.iterations, "solver": self.solver}
