"""SDE matching: simulation-free training of a latent SDE (Bartosh, Vetrov, Naesseth 2025).

The posterior is given by its Gaussian marginals ``z_t = mu(t) + sigma(t) eps`` (diagonal;
``mu``, ``sigma`` depend on the observed sequence ``X``). The Itô SDE with diffusion ``g``
whose marginals these are has the drift (Fokker-Planck with ``D = diag(g^2)``)::

    f_phi(z, t) = dmu/dt + (dsigma/dt) eps - 1/2 g^2 (z - mu) / sigma^2 + 1/2 div(g^2),

``eps = (z - mu) / sigma``, where ``div(g^2)_i = sum_j d(D_ij)/dz_j = d(g_i^2)/dz_i``. The time
derivatives come from one forward-mode ``torch.func.jvp`` in ``t``. The divergence is
``2 g_i dg_i/dz_i``, with ``dg_i/dz_i`` in closed form for our diffusion modules, or from one
``jvp`` in ``z`` with a tangent of ones (:func:`elementwise_divergence`), which gives the row
sums of the Jacobian and so equals ``dg_i/dz_i`` **only when ``g`` is elementwise** (``g_i``
depends on ``z`` only through ``z_i``): the condition our diffusion modules meet, and which
:func:`diffusion_with_divergence` checks through their ``elementwise`` flag.

Sharing the diffusion with the prior ``dz = f_theta dt + g dW``, Girsanov gives the
negative ELBO of one sequence with observations at ``t_1 .. t_N`` in ``[t_0, t_N]``::

    NELBO = KL(q(z_t0) || p(z_t0))
          + (t_N - t_0) E_{t ~ U(t_0, t_N)} E_{z_t ~ q} 1/2 |(f_phi - f_theta) / g|^2
          - sum_i E_{z_ti ~ q} log p(x_i | z_ti).

The reconstruction sums over all ``N`` observed slots (the unbiased NELBO; the authors'
notebook averages instead, dropping the factor ``N``); with a linear Gaussian decoder its
expectation over ``q`` is exact. No SDE is solved: the cost per step does not grow with
the number of solver steps, only with the encoder's reading of the sequence.
"""

from __future__ import annotations

import torch
from torch.func import jvp

from sciml_diffusion.data_parallel import item_generators
from sciml_diffusion.sde.latent import EncodedSequence, LatentSDE, NELBOTerms
from sciml_diffusion.sde.series import ObservedSeries

__all__ = [
    "marginal_with_time_derivative",
    "diffusion_with_divergence",
    "elementwise_divergence",
    "implied_posterior_drift",
    "sde_matching_loss",
]


def marginal_with_time_derivative(model: LatentSDE, encoded: EncodedSequence, t: torch.Tensor):
    """``(mu, sigma), (dmu/dt, dsigma/dt)`` at times ``t`` ``(B, K)``, each ``(B, K, D)``."""
    t = t.contiguous()
    return jvp(lambda tt: model.marginal(encoded, tt), (t,), (torch.ones_like(t),))


def diffusion_with_divergence(model: LatentSDE, t: torch.Tensor, z: torch.Tensor):
    """``g(z, t)`` and ``1/2 div(g^2) = g * dg_i/dz_i`` (elementwise ``g`` only), ``(*, D)``."""
    if not getattr(model.diffusion, "elementwise", False):
        raise ValueError(
            "the SDE-matching drift needs an elementwise diffusion (g_i depending on z_i "
            "only); use ElementwiseDiffusion or ConstantDiffusion"
        )
    if hasattr(model.diffusion, "value_and_derivative"):
        g, dg = model.diffusion.value_and_derivative(t, z)
        return g, g * dg
    return elementwise_divergence(lambda zz: model.diffusion(t, zz), z)


def elementwise_divergence(diffusion, z: torch.Tensor):
    """``g(z)`` and ``g * (dg/dz) 1`` by one forward-mode ``jvp`` with a tangent of ones.

    ``(dg/dz) 1`` is the row sum of the Jacobian; it equals the needed diagonal
    ``dg_i/dz_i`` only when ``g`` is elementwise.
    """
    z = z.contiguous()
    g, dg = jvp(diffusion, (z,), (torch.ones_like(z),))
    return g, g * dg


def implied_posterior_drift(
    model: LatentSDE, encoded: EncodedSequence, t: torch.Tensor, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior drift ``f_phi(z, t)`` implied by the marginals, and ``g(z, t)``.

    Parameters
    ----------
    t : Tensor ``(B, K)``
    z : Tensor ``(B, K, D)``

    Returns
    -------
    drift, g : Tensor ``(B, K, D)``
    """
    (mu, sigma), (dmu, dsigma) = marginal_with_time_derivative(model, encoded, t)
    eps = (z - mu) / sigma
    g, half_div = diffusion_with_divergence(model, t, z)
    return _marginal_drift(dmu, dsigma, eps, sigma, g, half_div), g


def sde_matching_loss(
    model: LatentSDE,
    series: ObservedSeries,
    t_samples: int = 1,
    generator: torch.Generator | None = None,
) -> NELBOTerms:
    """The SDE-matching NELBO terms for a batch of sequences (normalised data).

    Parameters
    ----------
    model : LatentSDE with ``posterior="marginal"``
    series : ObservedSeries, batch ``B``
    t_samples : int
        Random times ``K`` per sequence for the path KL (averaged).
    generator : torch.Generator or list of B torch.Generator, optional
        Source of the random times and of ``eps``: sequence ``b`` draws its times, then its
        ``eps``, from its own generator (a list is used as given; a single generator seeds
        one per sequence, :func:`~sciml_diffusion.data_parallel.item_generators`), so its
        draws do not depend on the rest of the batch.
    """
    if model.posterior != "marginal":
        raise ValueError("SDE matching needs a LatentSDE with posterior='marginal'")
    if t_samples < 1:
        raise ValueError(f"t_samples must be >= 1, got {t_samples}")
    encoded = model.encode(series)
    b, device, dtype = len(series), series.values.device, series.values.dtype
    t0, t1 = series.start, series.end
    generators = item_generators(generator, b)
    shape = (t_samples, model.latent_dim)
    draws = [
        (torch.rand(t_samples, generator=g), torch.randn(shape, generator=g)) for g in generators
    ]
    u = torch.stack([d[0] for d in draws]).to(device=device, dtype=dtype)
    eps = torch.stack([d[1] for d in draws]).to(u)
    t = t0[:, None] + u * (t1 - t0)[:, None]

    (mu, sigma), (dmu, dsigma) = marginal_with_time_derivative(model, encoded, t)
    z = mu + sigma * eps
    g, half_div = diffusion_with_divergence(model, t, z)
    posterior = _marginal_drift(dmu, dsigma, eps, sigma, g, half_div)
    mismatch = (posterior - model.prior_drift(t, z)) / g
    path_kl = 0.5 * (mismatch**2).sum(-1).mean(-1) * (t1 - t0)

    mu0, sigma0 = model.marginal(encoded, t0[:, None])
    initial_kl = model.initial_kl(mu0[:, 0], sigma0[:, 0])
    mu_obs, sigma_obs = model.marginal(encoded, series.times)
    reconstruction = -model.decoder.expected_log_prob(
        series.values, mu_obs, sigma_obs, series.mask, series.times
    )
    return NELBOTerms(reconstruction, initial_kl, path_kl)


def _marginal_drift(dmu, dsigma, eps, sigma, g, half_div) -> torch.Tensor:
    """``dmu/dt + dsigma/dt eps - 1/2 g^2 eps / sigma + 1/2 div(g^2)``."""
    return dmu + dsigma * eps - 0.5 * g**2 * eps / sigma + half_div
