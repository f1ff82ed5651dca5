r"""Samplers for the EDM probability-flow ODE and reverse SDE.

With forward process :math:`x_\sigma = x + \sigma n`, :math:`n \sim \mathcal N(0, C)`, and a
denoiser :math:`D(x, \sigma) \approx \mathbb E[x_0 \mid x_\sigma = x]`, the probability-flow
ODE is (Karras et al. 2022, EDM, eq. 4 with :math:`s = 1`)

.. math:: \frac{dx}{d\sigma} = \frac{x - D(x, \sigma)}{\sigma},

the same for white and Gaussian-random-field noise. Solvers over a decreasing schedule
:math:`\sigma_0 > \dots > \sigma_N = 0`:

- :func:`euler`: first order, one evaluation per step.
- :func:`heun`: EDM Algorithm 1, Heun's second-order correction except on the last step.
- :func:`dpm_solver_2m`: DPM-Solver++(2M) (Lu et al. 2022) in data prediction with
  :math:`\lambda = -\log\sigma`: :math:`x_{i+1} = \tfrac{\sigma_{i+1}}{\sigma_i} x_i +
  (1 - \tfrac{\sigma_{i+1}}{\sigma_i}) \hat D_i`, :math:`\hat D_i = (1 + \tfrac1{2r}) D_i -
  \tfrac1{2r} D_{i-1}`, :math:`r = h_{i-1}/h_i`; first order on the first and last step.
- :func:`stochastic`: EDM Algorithm 2: "churn" raises :math:`\sigma_i` to
  :math:`\hat\sigma = (1+\gamma)\sigma_i` by adding noise from the noise process, then a Heun step.
- :func:`euler_maruyama`: the reverse SDE :math:`dx = -C\nabla\log p\, d(\sigma^2) +
  C^{1/2} dW_{\sigma^2}` discretised as :math:`x_{i+1} = x_i + (1 - \sigma_{i+1}^2/\sigma_i^2)
  (D_i - x_i) + \sqrt{\sigma_i^2 - \sigma_{i+1}^2}\, n_i`.

Every sampler takes ``(denoiser, x, sigmas)`` with ``x`` the initial state at ``sigmas[0]``
(usually ``sigmas[0] * noise.sample(...)``) and an optional ``guidance``, which acts in up
to two places (posterior sampling plugs in here; see :mod:`sciml_diffusion.inverse`):

1. ``guidance.wrap(denoiser)``, if defined, returns the denoiser the sampler calls — a
   posterior denoiser :math:`E[x_0 \mid x_\sigma, y]` such as MMPS replaces the prior's;
2. ``guidance(x_next, x=x, denoised=D, sigma=sigma_i, sigma_next=sigma_{i+1}, index=i)``
   is called after every step and returns the corrected state. ``D = D(x, sigma_i)`` is
   the step's first denoiser evaluation. If ``guidance.differentiable`` is true the
   sampler runs each step with autograd on, ``x`` a leaf that requires grad, so the hook
   can differentiate ``denoised`` or ``x_next`` with respect to ``x`` (DPS, FunDPS); the
   returned state is detached.

A plain function is a hook only (no wrapping, not differentiable). Otherwise gradients are
left to the caller: wrap the call in ``torch.no_grad()`` to save memory.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from sciml_diffusion.diffusion.noise import NoiseProcess
from sciml_diffusion.diffusion.schedules import as_sigmas

__all__ = ["euler", "heun", "dpm_solver_2m", "stochastic", "euler_maruyama", "SAMPLERS"]

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def euler(denoiser: Denoiser, x: torch.Tensor, sigmas, *, guidance=None, progress=False, **_):
    """First-order (Euler) solver of the probability-flow ODE.

    Parameters
    ----------
    denoiser : callable ``(x (B, *), sigma (B,)) -> (B, *)``
    x : torch.Tensor ``(B, *)``
        State at ``sigmas[0]``.
    sigmas : array ``(N + 1,)``
        Decreasing noise levels ending in 0 (appended if missing).
    guidance : callable, optional
        Hook called after every step, see the module docstring.

    Returns
    -------
    torch.Tensor ``(B, *)``: the sample at sigma = 0.
    """
    sigmas = as_sigmas(sigmas)
    denoiser, tracked = _prepare(denoiser, guidance)
    for i, s, s_next in _steps(sigmas, progress):
        with _recording(tracked):
            x = _track(x, tracked)
            d = denoiser(x, _level(s, x))
            x_next = x + (s_next - s) * (x - d) / s
            x = _guide(guidance, x_next, x, d, s, s_next, i, tracked)
    return x


def heun(denoiser: Denoiser, x: torch.Tensor, sigmas, *, guidance=None, progress=False, **_):
    """Heun's second-order solver (EDM Algorithm 1); arguments as :func:`euler`."""
    sigmas = as_sigmas(sigmas)
    denoiser, tracked = _prepare(denoiser, guidance)
    for i, s, s_next in _steps(sigmas, progress):
        with _recording(tracked):
            x = _track(x, tracked)
            x_next, d = _heun_step(denoiser, x, s, s_next)
            x = _guide(guidance, x_next, x, d, s, s_next, i, tracked)
    return x


def dpm_solver_2m(
    denoiser: Denoiser, x: torch.Tensor, sigmas, *, guidance=None, progress=False, **_
):
    """DPM-Solver++(2M), multistep second order in ``log sigma``; arguments as :func:`euler`."""
    sigmas = as_sigmas(sigmas)
    denoiser, tracked = _prepare(denoiser, guidance)
    d_prev, h_prev = None, None
    for i, s, s_next in _steps(sigmas, progress):
        with _recording(tracked):
            x = _track(x, tracked)
            d = denoiser(x, _level(s, x))
            if s_next == 0:
                x_next = d
            else:
                h = math.log(s / s_next)
                d_eff = d
                if d_prev is not None:
                    r = h_prev / h
                    d_eff = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d_prev
                ratio = s_next / s
                x_next = ratio * x + (1 - ratio) * d_eff
                h_prev = h
            d_prev = d.detach() if tracked else d
            x = _guide(guidance, x_next, x, d, s, s_next, i, tracked)
    return x


def stochastic(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas,
    *,
    noise: NoiseProcess,
    grid,
    generator=None,
    churn: float = 0.0,
    sigma_tmin: float = 0.05,
    sigma_tmax: float = 50.0,
    s_noise: float = 1.0,
    guidance=None,
    progress=False,
):
    r"""EDM's stochastic sampler (Algorithm 2): churn then a Heun step.

    Parameters
    ----------
    noise : NoiseProcess
        Process the fresh noise is drawn from (the training noise).
    grid : Grid
        Grid of ``x``'s spatial dims.
    generator : torch.Generator or list of B generators, optional
    churn : float
        :math:`S_\mathrm{churn}`; :math:`\gamma = \min(S_\mathrm{churn}/N, \sqrt2 - 1)` on
        levels within ``[sigma_tmin, sigma_tmax]``, 0 elsewhere.
    s_noise : float
        Inflation of the added noise (EDM's :math:`S_\mathrm{noise}`).
    Other arguments as :func:`euler`.
    """
    sigmas = as_sigmas(sigmas)
    denoiser, tracked = _prepare(denoiser, guidance)
    n_steps = sigmas.numel() - 1
    for i, s, s_next in _steps(sigmas, progress):
        gamma = min(churn / n_steps, math.sqrt(2) - 1) if sigma_tmin <= s <= sigma_tmax else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:
            fresh = noise.sample(x.shape, grid, generator, device=x.device).to(x.dtype)
            x = x + math.sqrt(s_hat**2 - s**2) * s_noise * fresh
        with _recording(tracked):
            x = _track(x, tracked)
            x_next, d = _heun_step(denoiser, x, s_hat, s_next)
            x = _guide(guidance, x_next, x, d, s_hat, s_next, i, tracked)
    return x


def euler_maruyama(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas,
    *,
    noise: NoiseProcess,
    grid,
    generator=None,
    guidance=None,
    progress=False,
):
    """Euler–Maruyama on the reverse SDE; arguments as :func:`stochastic` (no churn)."""
    sigmas = as_sigmas(sigmas)
    denoiser, tracked = _prepare(denoiser, guidance)
    for i, s, s_next in _steps(sigmas, progress):
        with _recording(tracked):
            x = _track(x, tracked)
            d = denoiser(x, _level(s, x))
            x_next = x + (1 - (s_next / s) ** 2) * (d - x)
            if s_next > 0:
                fresh = noise.sample(x.shape, grid, generator, device=x.device).to(x.dtype)
                x_next = x_next + math.sqrt(s**2 - s_next**2) * fresh
            x = _guide(guidance, x_next, x, d, s, s_next, i, tracked)
    return x


#: samplers by name (CLI and :meth:`Prior.sample`)
SAMPLERS = {
    "euler": euler,
    "heun": heun,
    "dpm2m": dpm_solver_2m,
    "stochastic": stochastic,
    "em": euler_maruyama,
}


def _heun_step(denoiser, x, s, s_next):
    d = denoiser(x, _level(s, x))
    slope = (x - d) / s
    x_next = x + (s_next - s) * slope
    if s_next > 0:
        d2 = denoiser(x_next, _level(s_next, x))
        x_next = x + (s_next - s) * 0.5 * (slope + (x_next - d2) / s_next)
    return x_next, d


def _steps(sigmas: torch.Tensor, progress: bool):
    values = sigmas.tolist()
    pairs = list(zip(values[:-1], values[1:]))
    iterator = tqdm(pairs, desc="sampling", leave=False) if progress else pairs
    for i, (s, s_next) in enumerate(iterator):
        yield i, s, s_next


def _level(s: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)


def _prepare(denoiser, guidance):
    """The denoiser to call (wrapped by the guidance if it wraps) and whether to track grads."""
    wrap = getattr(guidance, "wrap", None)
    if wrap is not None:
        denoiser = wrap(denoiser)
    return denoiser, bool(getattr(guidance, "differentiable", False))


def _recording(tracked: bool):
    return torch.enable_grad() if tracked else contextlib.nullcontext()


def _track(x: torch.Tensor, tracked: bool) -> torch.Tensor:
    return x.detach().requires_grad_(True) if tracked else x


def _guide(guidance, x_next, x, d, s, s_next, i, tracked=False):
    if guidance is None:
        return x_next
    out = guidance(x_next, x=x, denoised=d, sigma=s, sigma_next=s_next, index=i)
    return out.detach() if tracked else out
