"""Solver-based training: adjoint equals backprop, Itô/Stratonovich consistency, evaluation."""

import math

import pytest
import torch
from torch import nn

from sciml_diffusion.sde.baselines import solve_posterior, solver_nelbo
from sciml_diffusion.sde.evaluate import (
    evaluate,
    fit_ou_drift,
    forecast,
    ou_parameters,
    posterior_paths,
)
from sciml_diffusion.sde.latent import LatentSDE
from sciml_diffusion.sde.series import ChannelNormalizer, ObservedSeries
from tests.sde.test_matching import OUPosteriorModel, ou_marginal


def small_series(batch=4, length=8, channels=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    times = torch.linspace(0.0, 1.0, length)
    return ObservedSeries.from_tensors(times, torch.randn(batch, length, channels, generator=g))


def drift_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs = {"hidden": 16, "context_dim": 8, **kwargs}
    return LatentSDE(data_dim=2, latent_dim=3, posterior="drift", **kwargs).double()


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_adjoint_and_backprop_give_the_same_loss_and_gradients():
    # observation spacing 0.25 is a multiple of dt (the reversible-Heun adjoint is then exact)
    series = small_series(length=5)
    series = ObservedSeries(series.times.double(), series.values.double(), series.mask)
    results = []
    for method in ("backprop", "adjoint"):
        model = drift_model()
        terms = solver_nelbo(model, series, method, dt=0.0625, generator=torch.Generator())
        terms.total().backward()
        results.append((terms.nelbo.detach(), _grads(model)))
    (loss_b, grad_b), (loss_a, grad_a) = results
    torch.testing.assert_close(loss_a, loss_b)
    assert grad_a.keys() == grad_b.keys()
    for name in grad_b:
        torch.testing.assert_close(grad_a[name], grad_b[name], rtol=1e-5, atol=1e-7)


def test_solver_gradients_reach_every_parameter():
    model = drift_model().float()
    solver_nelbo(model, small_series(), "backprop", dt=0.1).total().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert unused == []


def shifted(series, shifts):
    """The same sequences with times moved by ``shifts`` ``(B,)``."""
    return ObservedSeries(series.times + shifts[:, None], series.values, series.mask)


@pytest.mark.parametrize(
    "options, shift, same",
    [
        ({}, 3.7, True),  # autonomous: any shift leaves the NELBO unchanged
        ({"period": 2.0}, 2.0, True),  # seasonal: a whole period leaves it unchanged
        ({"period": 2.0}, 1.0, False),  # half a period changes the phase the model sees
    ],
)
def test_solver_nelbo_of_sequences_with_different_starts(options, shift, same):
    """Sequences starting at different times are solved together on relative times; the
    calendar phase reaches drift, diffusion and encoder through absolute time."""
    model = drift_model(**options)
    if model.diffusion.u is not None:
        torch.nn.init.normal_(model.diffusion.u)
    series = small_series(batch=3).to("cpu")
    series = ObservedSeries(series.times.double(), series.values.double(), series.mask)
    moved = shifted(series, torch.tensor([0.0, shift, 2 * shift], dtype=torch.float64))
    a = solver_nelbo(model, series, "euler", 0.05, torch.Generator().manual_seed(1)).nelbo
    b = solver_nelbo(model, moved, "euler", 0.05, torch.Generator().manual_seed(1)).nelbo
    assert torch.allclose(a, b, atol=1e-8) == same


class SlopedDiffusion(nn.Module):
    """``g(z) = 0.5 + 0.4 tanh(z)`` elementwise: a strong Itô-Stratonovich difference."""

    elementwise = True

    def forward(self, t, z):
        return 0.5 + 0.4 * torch.tanh(z)

    def value_and_derivative(self, t, z):
        return self.forward(t, z), 0.4 * (1 - torch.tanh(z) ** 2)


def test_stratonovich_solve_matches_ito_solve_of_the_same_model():
    """The reversible-Heun (Stratonovich) solve with the -1/2 g g' shift has the Itô law."""
    torch.manual_seed(0)
    model = LatentSDE(data_dim=1, latent_dim=1, posterior="drift", hidden=8, context_dim=4)
    model.diffusion = SlopedDiffusion()
    n = 3000
    series = small_series(batch=1, length=3, channels=1)
    encoded = model.encode(series).repeat(n)
    grid = torch.tensor([0.0, 1.0])
    z0 = torch.zeros(n, 1)
    with torch.no_grad():
        ito, kl_ito = solve_posterior(model, encoded, z0, grid, 2e-2, 1, "euler")
        strat, kl_strat = solve_posterior(model, encoded, z0, grid, 2e-2, 2, "backprop")
    se = float(ito[-1].std()) / math.sqrt(n)
    assert abs(float(ito[-1].mean() - strat[-1].mean())) < 4 * math.sqrt(2) * se
    assert abs(float(kl_ito.mean() - kl_strat.mean())) < 0.05 * float(kl_ito.mean()) + 1e-3
    # without the shift the means would differ by about int 1/2 g g' dt ~ 0.1 >> se
    assert 0.1 > 6 * se


def test_posterior_paths_of_known_marginals_reproduce_them():
    """Solving the implied posterior SDE (Itô Euler) gives the OU marginals; KL is zero."""
    model = OUPosteriorModel(latent_dim=1)
    n = 3000
    series = ObservedSeries.from_tensors(torch.linspace(0, 1.0, 3), torch.zeros(1, 3, 1))
    paths = posterior_paths(model, series, members=n, dt=1e-2, seed=0)
    for k, t in enumerate(paths.grid):
        mean, std = ou_marginal(t)
        z = paths.zs[k, :, 0]
        assert abs(float(z.mean() - mean)) < 4 * float(std) / math.sqrt(n)
        assert abs(float(z.std() / std) - 1) < 4 / math.sqrt(2 * n)
    encoded = model.encode(series).repeat(16)
    z0 = torch.randn(16, 1)
    _, log_ratio = solve_posterior(model, encoded, z0, paths.grid, 1e-2, 0, "euler")
    assert log_ratio.abs().max() < 1e-8


def test_fit_ou_drift_is_exact_on_a_linear_drift():
    x = torch.linspace(-2, 3, 50, dtype=torch.float64)
    fitted = fit_ou_drift(x, 1.7 * (0.4 - x), torch.full_like(x, 0.3))
    assert fitted == pytest.approx({"theta": 1.7, "mu": 0.4, "sigma": 0.3})


def test_ou_parameters_map_the_latent_prior_through_decoder_and_normalizer():
    model = LatentSDE(data_dim=1, latent_dim=1, diffusion="constant")
    model.prior_drift = lambda t, z: -2.5 * z
    with torch.no_grad():
        model.diffusion.e.fill_(math.log(math.expm1(0.2)))
        model.decoder.linear.weight.fill_(-3.0)
        model.decoder.linear.bias.fill_(0.5)
    normalizer = ChannelNormalizer(torch.tensor([10.0]), torch.tensor([2.0]))
    params = ou_parameters(model, normalizer, torch.linspace(5, 15, 21))
    # x = 2 (-3 z + 0.5) + 10: theta = 2.5, mu = 11, sigma = |2 * -3| * 0.2 = 1.2
    assert params == pytest.approx({"theta": 2.5, "mu": 11.0, "sigma": 1.2}, rel=1e-5)


def test_evaluate_and_forecast_shapes_and_finiteness():
    torch.manual_seed(0)
    model = LatentSDE(data_dim=2, latent_dim=3, hidden=16, context_dim=8)
    full = small_series(batch=5, length=12)
    observed = ObservedSeries(full.times[:, :8], full.values[:, :8], full.mask[:, :8])
    future = ObservedSeries(full.times[:, 8:], full.values[:, 8:], full.mask[:, 8:])
    keep = torch.ones(5, 8, dtype=torch.bool)
    keep[:, 3] = False
    seen, heldout = observed.split_mask(keep)
    normalizer = ChannelNormalizer.fit(full)
    result = evaluate(model, seen, normalizer, future, heldout, members=3, dt=0.05, batch_size=2)
    assert all(math.isfinite(v) for v in result.as_dict().values())
    lead = future.times[0] - observed.end[0]
    means, samples = forecast(model, observed, lead, members=3, dt=0.05, normalizer=normalizer)
    assert means.shape == samples.shape == (3, 5, 4, 2)


@pytest.mark.parametrize("posterior", ["marginal", "drift"])
def test_forecast_from_windows_with_different_starts(posterior):
    """Each window is forecast from its own end: a window moved by a whole period gets the
    same forecast (seasonal model, same seeds), one moved by half a period does not."""
    torch.manual_seed(0)
    model = LatentSDE(2, 3, hidden=16, context_dim=8, posterior=posterior, period=2.0).double()
    torch.nn.init.normal_(model.diffusion.u)
    base = small_series(batch=1)
    base = ObservedSeries(base.times.double(), base.values.double(), base.mask)
    lead = torch.tensor([0.25, 0.5], dtype=torch.float64)
    outputs = {}
    for shift in (0.0, 2.0, 1.0):
        moved = shifted(base, torch.tensor([shift], dtype=torch.float64))
        outputs[shift] = forecast(model, moved, lead, members=4, dt=0.05, seed=3)[0]
    assert outputs[0.0].shape == (4, 1, 2, 2)
    torch.testing.assert_close(outputs[0.0], outputs[2.0])
    assert not torch.allclose(outputs[0.0], outputs[1.0], atol=1e-6)
