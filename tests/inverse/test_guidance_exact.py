"""Every guidance method against the exact posterior of a Gaussian-random-field prior.

With the exact denoiser and linear sensors the posterior is known in closed form
(:func:`gaussian_posterior`). MMPS with enough CG iterations is the exact posterior
denoiser, so its ensemble must match the closed-form mean within sampling error and its
pointwise std within a few per cent, with every sampler. DPS, FunDPS and the DiffusionPDE
preset are approximations: they must pull the ensemble mean toward the posterior mean
(well below the prior's error), and their std ratio is measured, not asserted, in
``experiments/gaussian_posterior``.
"""

import pytest
import torch

from sciml_diffusion.diffusion import SAMPLERS
from sciml_diffusion.inverse import gaussian_posterior, reconstruct
from tests.inverse.conftest import gaussian_case


def _compare(prior, obs, ds):
    """(Mahalanobis distance of the ensemble-mean error over its expected size, the error
    relative to the prior mean's, mean ratio of ensemble std to exact std)."""
    mean, std, cov = gaussian_posterior(prior, obs, covariance=True)
    members = ds.sizes["member"]
    ens_mean = torch.as_tensor(ds["u_mean"].values, dtype=torch.float64)
    ens_std = torch.as_tensor(ds["u_std"].values, dtype=torch.float64)
    error = (ens_mean - mean[0]).reshape(-1)
    values, vectors = torch.linalg.eigh(cov)
    keep = values > 1e-4 * values.max()  # directions the posterior leaves uncertain
    z = (vectors[:, keep].T @ error) / (values[keep] / members).sqrt()  # ~ N(0, 1) each
    scaled = float(z.square().mean().sqrt())  # ~ 1 for an exact sampler
    relative = float(error.norm() / (mean[0] - 0.5).norm())
    inside = std[0] > 0.2 * std[0].max()  # away from the sensors, where std ~ 0
    ratio = float((ens_std[inside] / std[0][inside]).mean())
    return scaled, relative, ratio


@pytest.mark.parametrize(("ndim", "noise_kind"), [(1, "grf"), (1, "white"), (2, "grf")])
def test_mmps_samples_the_exact_posterior(ndim, noise_kind):
    prior, _, obs = gaussian_case(ndim, noise_kind, sensors=6, noise_std=0.05)
    ds = reconstruct(
        prior, obs, method="mmps", members=128, steps=32, iterations=6, progress=False
    )
    scaled_error, _, ratio = _compare(prior, obs, ds)
    assert scaled_error < 1.5  # within sampling error (expected ~1)
    assert abs(ratio - 1) < 0.1


@pytest.mark.parametrize("sampler", [s for s in SAMPLERS if s != "heun"])
def test_mmps_works_with_every_sampler(sampler):
    prior, _, obs = gaussian_case(1, "grf", sensors=6, noise_std=0.05)
    steps = {"euler": 48, "dpm2m": 24, "stochastic": 24, "em": 96}[sampler]
    ds = reconstruct(
        prior,
        obs,
        "mmps",
        members=128,
        steps=steps,
        sampler=sampler,
        iterations=8,
        progress=False,
    )
    scaled_error, _, ratio = _compare(prior, obs, ds)
    assert scaled_error < 2.5
    assert abs(ratio - 1) < 0.15


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("dps", dict(zeta=0.5, steps=64)),
        ("fundps", dict(obs_weight=5.0, steps=64)),
        ("diffusionpde", dict(steps=200)),
    ],
)
@pytest.mark.parametrize("sampler", ["heun", "euler", "stochastic"])
def test_gradient_guidance_pulls_toward_the_posterior(method, options, sampler):
    prior, _, obs = gaussian_case(1, "grf", sensors=6, noise_std=0.05)
    ds = reconstruct(prior, obs, method, members=32, sampler=sampler, progress=False, **options)
    assert torch.isfinite(torch.as_tensor(ds["u"].values)).all()
    _, relative, _ = _compare(prior, obs, ds)
    assert relative < 0.6


@pytest.mark.parametrize("solver", ["gmres", "cg"])
def test_krylov_solvers_solve_small_systems(solver):
    from sciml_diffusion.inverse.guidance import conjugate_gradient, gmres

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 6, 6, generator=gen, dtype=torch.float64)
    spd = a @ a.transpose(1, 2) + 6 * torch.eye(6, dtype=torch.float64)
    matrix = spd if solver == "cg" else spd + 2 * (a - a.transpose(1, 2))  # non-symmetric
    b = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    solve = gmres if solver == "gmres" else conjugate_gradient
    w = solve(lambda v: (matrix @ v[..., None])[..., 0], b, iterations=6)
    torch.testing.assert_close(w, torch.linalg.solve(matrix, b))
