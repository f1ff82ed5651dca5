"""SDE matching against closed-form references: known Gaussian marginals, Fokker-Planck."""

import math

import pytest
import torch
from torch import nn

from sciml_diffusion.sde.covariates import RawTime, SeasonalCovariates
from sciml_diffusion.sde.latent import ConstantDiffusion, ElementwiseDiffusion, LatentSDE
from sciml_diffusion.sde.matching import (
    diffusion_with_divergence,
    elementwise_divergence,
    implied_posterior_drift,
    sde_matching_loss,
)
from sciml_diffusion.sde.series import ObservedSeries

THETA, SIGMA, M0, S0 = 1.3, 0.6, 0.8, 0.25


def ou_marginal(t: torch.Tensor):
    """Mean and std of ``dz = -theta z dt + sigma dW``, ``z_0 ~ N(M0, S0^2)``."""
    decay = torch.exp(-THETA * t)
    var = S0**2 * decay**2 + SIGMA**2 * (1 - decay**2) / (2 * THETA)
    return M0 * decay, var.sqrt()


class OUPosteriorModel(LatentSDE):
    """A LatentSDE whose posterior marginals are those of its own OU prior (posterior = prior)."""

    def __init__(self, latent_dim: int = 2):
        super().__init__(data_dim=1, latent_dim=latent_dim, diffusion="constant")
        with torch.no_grad():
            self.diffusion.e.fill_(math.log(math.expm1(SIGMA)))
            self.initial_mean.fill_(M0)
            self.initial_log_std.fill_(math.log(S0))

    def marginal(self, encoded, t):
        mu, std = ou_marginal(t)
        shape = (*t.shape, self.latent_dim)
        return mu[..., None].expand(shape), std[..., None].expand(shape)

    def prior_drift(self, t, z):
        return -THETA * z


def regular_series(batch=3, length=11, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    times = torch.linspace(0.0, 2.0, length)
    return ObservedSeries.from_tensors(times, torch.randn(batch, length, channels, generator=g))


def test_implied_drift_equals_true_ou_drift():
    model = OUPosteriorModel().double()
    t = torch.linspace(0.01, 2.0, 7, dtype=torch.float64).repeat(4, 1)
    z = torch.randn(4, 7, 2, dtype=torch.float64) * 2.0
    drift, g = implied_posterior_drift(model, None, t, z)
    # (the diffusion parameter was set in float32, hence 1e-6 rather than 1e-12)
    torch.testing.assert_close(drift, -THETA * z, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g, torch.full_like(z, SIGMA), rtol=1e-6, atol=1e-7)


class GaussianPathModel(LatentSDE):
    """Arbitrary smooth Gaussian marginals with a state-dependent elementwise diffusion."""

    def __init__(self):
        super().__init__(data_dim=1, latent_dim=1, diffusion="elementwise")

    def marginal(self, encoded, t):
        mu = torch.sin(2 * t) + 0.3 * t
        std = 0.4 + 0.2 * torch.cos(3 * t) ** 2
        return mu[..., None], std[..., None]


def test_implied_drift_solves_fokker_planck_with_state_dependent_diffusion():
    """dq/dt + d(f q)/dz - 1/2 d^2(g^2 q)/dz^2 = 0 for the Gaussian marginals q."""
    torch.manual_seed(0)
    model = GaussianPathModel().double()

    def density(t, z):
        mu, std = model.marginal(None, t)
        return torch.exp(-0.5 * ((z - mu) / std) ** 2) / (std * math.sqrt(2 * math.pi))

    def flux(t, z):
        f, g = implied_posterior_drift(model, None, t, z)
        return f * density(t, z)

    def diffusion_term(t, z):
        return 0.5 * model.diffusion(t, z) ** 2 * density(t, z)

    t = torch.tensor([[0.3, 0.9, 1.7]], dtype=torch.float64).T.expand(3, 5).contiguous()
    mu, std = model.marginal(None, t)
    z = (mu[..., 0] + std[..., 0] * torch.linspace(-2, 2, 5, dtype=torch.float64))[..., None]
    h = 1e-4
    dq_dt = (density(t + h, z) - density(t - h, z)) / (2 * h)
    dflux_dz = (flux(t, z + h) - flux(t, z - h)) / (2 * h)
    d2 = (diffusion_term(t, z + h) - 2 * diffusion_term(t, z) + diffusion_term(t, z - h)) / h**2
    residual = dq_dt + dflux_dz - d2
    assert residual.abs().max() < 1e-5 * dq_dt.abs().max()


def test_loss_kl_terms_vanish_when_posterior_equals_prior():
    model = OUPosteriorModel()
    series = regular_series()
    loss = sde_matching_loss(model, series, t_samples=8, generator=torch.Generator())
    assert loss.path_kl.abs().max() < 1e-8
    assert loss.initial_kl.abs().max() < 1e-6
    assert torch.isfinite(loss.reconstruction).all()


def test_loss_kl_positive_when_prior_differs():
    model = OUPosteriorModel()
    model.prior_drift = lambda t, z: -2.0 * THETA * z
    loss = sde_matching_loss(model, regular_series(), t_samples=8, generator=torch.Generator())
    assert (loss.path_kl > 1e-3).all()


def full_divergence_half(diffusion_fn, z):
    """1/2 sum_j d(D_ij)/dz_j for D(z) = diag(g(z)^2), by autograd's full Jacobian."""
    out = []
    for row in z:
        jac = torch.autograd.functional.jacobian(
            lambda v: torch.diag_embed(diffusion_fn(v) ** 2), row
        )  # (D, D, D): d D_ij / d z_k
        out.append(0.5 * torch.einsum("ijj->i", jac))
    return torch.stack(out)


@pytest.mark.parametrize("covariates", [None, RawTime(), SeasonalCovariates(12.0, 2)])
def test_elementwise_divergence_matches_full_autograd_divergence(covariates):
    torch.manual_seed(1)
    diffusion = ElementwiseDiffusion(3, covariates=covariates).double()
    if diffusion.u is not None:
        torch.nn.init.normal_(diffusion.u)
    model = LatentSDE(1, 3).double()
    model.diffusion = diffusion
    z = torch.randn(5, 3, dtype=torch.float64)
    t = torch.full((5,), 0.4, dtype=torch.float64)
    reference = full_divergence_half(lambda v: diffusion(t[0], v), z)
    _, closed_form = diffusion_with_divergence(model, t, z)
    _, by_jvp = elementwise_divergence(lambda v: diffusion(t, v), z)
    torch.testing.assert_close(closed_form, reference)
    torch.testing.assert_close(by_jvp, reference)


def test_jvp_divergence_is_wrong_for_non_elementwise_diffusion():
    """The documented condition: a diagonal g that mixes coordinates breaks the shortcut."""
    mix = torch.tensor([[1.0, 0.5], [-0.7, 1.0]], dtype=torch.float64)

    def mixing(v):
        return nn.functional.softplus(v @ mix.T)

    z = torch.randn(4, 2, dtype=torch.float64)
    reference = full_divergence_half(mixing, z)
    _, by_jvp = elementwise_divergence(mixing, z)
    assert (by_jvp - reference).abs().max() > 1e-2


def test_non_elementwise_diffusion_module_is_refused():
    model = LatentSDE(1, 2)
    model.diffusion = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="elementwise"):
        diffusion_with_divergence(model, torch.zeros(3), torch.zeros(3, 2))


def test_constant_diffusion_has_zero_divergence():
    model = LatentSDE(1, 2, diffusion="constant")
    assert isinstance(model.diffusion, ConstantDiffusion)
    _, half_div = diffusion_with_divergence(model, torch.zeros(3), torch.randn(3, 2))
    assert torch.equal(half_div, torch.zeros(3, 2))


def _loss(model, series, seed=3):
    loss = sde_matching_loss(
        model, series, t_samples=2, generator=torch.Generator().manual_seed(seed)
    )
    return torch.stack([loss.reconstruction, loss.initial_kl, loss.path_kl])


def test_padding_irregular_slots_and_missing_values_leave_the_loss_unchanged():
    torch.manual_seed(2)
    model = LatentSDE(data_dim=2, latent_dim=3, hidden=16, context_dim=8)
    g = torch.Generator().manual_seed(0)
    times = torch.tensor([0.0, 0.3, 0.5, 1.1, 1.6, 2.0])
    values = torch.randn(2, 6, 2, generator=g)
    values[0, 2, 1] = torch.nan  # a missing value
    base = ObservedSeries.from_tensors(times, values)

    # the same observations with extra, fully missing slots at other (irregular) times,
    # and padding slots (NaN time) at the end
    wide_times = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.7, 1.1, 1.6, 1.9, 2.0, torch.nan])
    wide_values = torch.full((2, 10, 2), torch.nan)
    wide_values[:, [0, 2, 3, 5, 6, 8]] = values
    wide = ObservedSeries.from_tensors(wide_times, wide_values)
    torch.testing.assert_close(_loss(model, wide), _loss(model, base))

    # garbage under the mask does not matter either
    garbage = ObservedSeries(base.times, torch.where(base.mask, base.values, 1e6), base.mask)
    torch.testing.assert_close(_loss(model, garbage), _loss(model, base))


def test_reconstruction_counts_every_observation():
    """The unbiased NELBO sums over the N observations (no 1/N factor)."""
    torch.manual_seed(4)
    model = LatentSDE(data_dim=1, latent_dim=2, hidden=16, context_dim=8)
    series = regular_series(batch=2, length=9)
    doubled = ObservedSeries.from_tensors(
        torch.cat([series.times[0], series.times[0] + 3.0]),
        torch.cat([series.values, series.values], 1),
    )
    encoded = model.encode(series)
    mu, sigma = model.marginal(encoded, series.times)
    per_point = -model.decoder.expected_log_prob(series.values, mu, sigma, series.mask)
    recon = _loss(model, series)[0]
    torch.testing.assert_close(recon, per_point)
    assert (_loss(model, doubled)[0].abs() > 1.5 * recon.abs()).all()


def test_matching_gradients_reach_every_parameter():
    torch.manual_seed(5)
    model = LatentSDE(data_dim=2, latent_dim=3, hidden=16, context_dim=8)
    series = regular_series(channels=2)
    sde_matching_loss(model, series, t_samples=2).total().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert unused == []
