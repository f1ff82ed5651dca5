"""Samplers, schedules, preconditioning and noise checked against the exact Gaussian denoiser.

When the data are a Gaussian random field the ideal denoiser is known in closed form
(:class:`GaussianDenoiser`); every sampler fed with it must return samples whose mode
coefficients have the data mean and the data spectrum, within sampling error plus a small
discretisation allowance — for white and GRF noise, in 1-D and 2-D, at two resolutions.
"""

import math

import pytest
import torch

from sciml_diffusion.diffusion import (
    SAMPLERS,
    GaussianDenoiser,
    GRFNoise,
    WhiteNoise,
    edm_sigmas,
    member_generators,
)
from sciml_diffusion.fields import GaussianRandomField, Grid

#: steps per sampler: first-order solvers need more for the same discretisation error
STEPS = {"euler": 80, "heun": 32, "dpm2m": 32, "stochastic": 32, "em": 128}
#: allowed bias of the mean variance ratio (time discretisation, O(1/steps)), per sampler
BIAS = {"euler": 0.09, "heun": 0.045, "dpm2m": 0.045, "stochastic": 0.045, "em": 0.12}

CASES = {  # ndim: (data field, two resolutions, ensemble size)
    1: (dict(alpha=1.0, tau=5.0, sigma=5.0), (16, 32), 400),
    2: (dict(alpha=1.5, tau=4.0, sigma=10.0), (8, 12), 128),
}
MEAN = 0.5


def _noise(kind, grid):
    alpha = grid.ndim / 2 + 0.5
    return WhiteNoise() if kind == "white" else GRFNoise.unit_variance(grid, alpha, 10.0)


def _run(sampler, field, noise, grid, count, steps, seed=0):
    denoiser = GaussianDenoiser(field, noise, grid, mean=MEAN)
    sigmas = edm_sigmas(steps, sigma_min=1e-3, sigma_max=80.0)
    generator = torch.Generator().manual_seed(seed)
    x = sigmas[0].item() * noise.sample((count, 1, *grid.shape), grid, generator)
    x = x + MEAN
    return SAMPLERS[sampler](
        denoiser, x, sigmas, noise=noise, grid=grid, generator=generator
    ), denoiser


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("noise_kind", ["white", "grf"])
@pytest.mark.parametrize("ndim", [1, 2])
def test_exact_denoiser_samples_have_data_mean_and_spectrum(sampler, noise_kind, ndim):
    params, sizes, count = CASES[ndim]
    field = GaussianRandomField(**params)
    coarse = Grid.regular((sizes[0],) * ndim, periodic=True)
    noise = _noise(noise_kind, coarse)  # one noise process for both resolutions
    for n in sizes:
        grid = coarse.with_shape(n)
        samples, denoiser = _run(sampler, field, noise, grid, count, STEPS[sampler])
        modes = field.to_modes(samples[:, 0] - MEAN, grid)
        spectrum = denoiser.spectrum
        ratio = modes.var(0) / spectrum
        sampling_sd = math.sqrt(2 / (count - 1))
        assert abs(ratio.mean() - 1) < BIAS[sampler] + 3 * sampling_sd / math.sqrt(ratio.numel())
        assert (ratio - 1).abs().max() < 5 * sampling_sd + BIAS[sampler]
        z = modes.mean(0) / (spectrum / count).sqrt()
        assert z.abs().max() < 5


@pytest.mark.parametrize("noise_kind", ["white", "grf"])
def test_dirichlet_exact_denoiser_keeps_boundary_zero(noise_kind):
    field = GaussianRandomField(alpha=1.0, tau=5.0, sigma=5.0, boundary="dirichlet")
    grid = Grid.regular(33)
    noise = (
        WhiteNoise()
        if noise_kind == "white"
        else GRFNoise(GaussianRandomField(alpha=1.0, tau=10.0, sigma=10.0, boundary="dirichlet"))
    )
    denoiser = GaussianDenoiser(field, noise, grid)
    sigmas = edm_sigmas(32, sigma_min=1e-3)
    gen = torch.Generator().manual_seed(1)
    x = sigmas[0].item() * noise.sample((400, *grid.shape), grid, gen)
    out = SAMPLERS["heun"](denoiser, x, sigmas)
    assert out[:, [0, -1]].abs().max() < 1e-5
    ratio = field.to_modes(out, grid).var(0)[1:-1] / denoiser.spectrum[1:-1]
    assert abs(ratio.mean() - 1) < 0.06


def test_exact_denoiser_rejects_neumann_and_mismatched_noise():
    grid = Grid.regular(16)
    with pytest.raises(ValueError, match="orthonormal"):
        GaussianDenoiser(GaussianRandomField(2.0, 3.0, boundary="neumann"), WhiteNoise(), grid)
    noise = GRFNoise(GaussianRandomField(2.0, 3.0, boundary="periodic"))
    with pytest.raises(ValueError, match="boundaries"):
        GaussianDenoiser(GaussianRandomField(2.0, 3.0, boundary="dirichlet"), noise, grid)


@pytest.mark.parametrize("sampler", ["stochastic", "em"])
def test_member_reproducible_whatever_the_batch(sampler):
    grid = Grid.regular(16, periodic=True)
    field = GaussianRandomField(alpha=1.0, tau=5.0, sigma=5.0)
    noise = GRFNoise.unit_variance(grid, 1.0, 10.0)
    denoiser = GaussianDenoiser(field, noise, grid)
    sigmas = edm_sigmas(10)

    def draw(n):
        gens = member_generators(7, n)
        x = sigmas[0].item() * noise.sample((n, 1, 16), grid, gens)
        churn = {"churn": 10.0} if sampler == "stochastic" else {}
        return SAMPLERS[sampler](
            denoiser, x, sigmas, noise=noise, grid=grid, generator=gens, **churn
        )

    big, small = draw(5), draw(2)
    torch.testing.assert_close(big[:2], small)
    assert not torch.allclose(big[0], big[1])


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_guidance_hook_called_after_every_step(sampler):
    grid = Grid.regular(16, periodic=True)
    field = GaussianRandomField(alpha=1.0, tau=5.0)
    noise = WhiteNoise()
    denoiser = GaussianDenoiser(field, noise, grid)
    sigmas = edm_sigmas(6)
    calls = []

    def hook(x_next, *, x, denoised, sigma, sigma_next, index):
        calls.append((index, sigma_next))
        assert x.shape == x_next.shape == denoised.shape
        return x_next - x_next.mean(-1, keepdim=True)  # a projection: zero spatial mean

    x = 80 * torch.randn(4, 1, 16, generator=torch.Generator().manual_seed(0))
    out = SAMPLERS[sampler](
        denoiser, x, sigmas, noise=noise, grid=grid, generator=None, guidance=hook
    )
    assert [i for i, _ in calls] == list(range(6))
    assert calls[-1][1] == 0
    assert out.mean(-1).abs().max() < 1e-5


@pytest.mark.parametrize(("sampler", "order"), [("euler", 1), ("heun", 2), ("dpm2m", 2)])
@pytest.mark.parametrize("noise_kind", ["white", "grf"])
def test_ode_solvers_converge_at_their_order(sampler, order, noise_kind):
    # With the exact denoiser the ODE maps each mode linearly, x_0 = g_m x_T, and the exact
    # flow from N(0, s + sigma_max^2 q) to N(0, s) has gain sqrt(s / (s + sigma_max^2 q)).
    grid = Grid.regular(32, periodic=True)
    field = GaussianRandomField(alpha=1.0, tau=5.0, sigma=5.0)
    noise = _noise(noise_kind, grid)
    denoiser = GaussianDenoiser(field, noise, grid)
    q = denoiser.noise_spectrum
    ones = field.from_modes(torch.ones(1, 1, 32, dtype=torch.float64), grid)

    def gain_error(steps):
        sigmas = edm_sigmas(steps, sigma_min=1e-3, sigma_max=80.0)
        out = SAMPLERS[sampler](denoiser, ones, sigmas)
        gain = field.to_modes(out, grid)[0, 0]
        exact = (denoiser.spectrum / (denoiser.spectrum + 80.0**2 * q)).sqrt()
        return (gain / exact - 1).abs().max().item()

    coarse, fine = gain_error(32), gain_error(128)
    assert fine < 0.1
    assert fine < coarse * 4.0 ** (-order) * 1.6  # error ~ steps^-order


def test_churn_adds_variance_error_so_it_is_off_by_default():
    """EDM's S_churn = 40 at 32 levels (gamma = sqrt(2) - 1 at every level) overshoots the
    data's mode variances by ~8 %, 3.5x Heun's error, inside EDM's window [0.05, 50] or not;
    the default (no churn) has Heun's error."""
    field = GaussianRandomField(**CASES[2][0])
    grid = Grid.regular((12, 12), periodic=True)
    noise = _noise("grf", grid)

    def variance_error(**options):
        denoiser = GaussianDenoiser(field, noise, grid)
        sigmas = edm_sigmas(32, sigma_min=2e-3, sigma_max=80.0)
        gen = torch.Generator().manual_seed(0)
        x = sigmas[0].item() * noise.sample((600, *grid.shape), grid, gen).double()
        out = SAMPLERS["stochastic"](
            denoiser, x, sigmas, noise=noise, grid=grid, generator=gen, **options
        )
        return float((field.to_modes(out, grid).var(0) / denoiser.spectrum).mean() - 1)

    default = variance_error()
    heun = variance_error(churn=0.0)
    assert default == pytest.approx(heun, abs=1e-12)
    assert abs(default) < BIAS["heun"]
    everywhere = variance_error(churn=40.0, sigma_tmin=0.0, sigma_tmax=math.inf)
    window = variance_error(churn=40.0, sigma_tmin=0.05, sigma_tmax=50.0)
    assert everywhere > 2.5 * abs(heun) and window > 2.5 * abs(heun)
