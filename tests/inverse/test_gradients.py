"""Observation and PDE-residual loss gradients against finite differences (float64)."""

import pytest
import torch

from sciml_diffusion import pdes
from sciml_diffusion.diffusion import WhiteNoise
from sciml_diffusion.fields import Normalizer, Observations
from sciml_diffusion.inverse import DiffusionPDE, FunDPS, PDETerm, sensor_measurement


@pytest.fixture(scope="module")
def darcy():
    data = pdes.get("darcy").generate(1, 12, seed=1)
    norm = Normalizer.fit(data, ["a", "u"])
    obs = Observations.per_variable(data, count=8, variables=["a", "u"], seed=3)
    x = norm.normalize(data.to_tensor(["a", "u"], dtype=torch.float64))
    return data, norm, obs, x


def _perturbed(x, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (x + 0.3 * torch.randn(x.shape, generator=gen, dtype=x.dtype)).requires_grad_(True)


@pytest.mark.parametrize("method", ["fundps", "diffusionpde"])
@pytest.mark.parametrize("sigma", [0.5, 3.0])
def test_joint_loss_gradient_matches_finite_differences(darcy, method, sigma):
    data, norm, obs, x = darcy
    measurement = sensor_measurement(obs, data.grid, ["a", "u"], norm)
    pde = PDETerm(pdes.get("darcy"), ["a", "u"], norm, data.grid)
    if method == "fundps":
        guidance = FunDPS(measurement, pde, obs_weight=2.0, pde_weight=1e-3, noise=WhiteNoise())

        def loss(z):
            return guidance.loss(z, sigma)
    else:
        guidance = DiffusionPDE(measurement, steps=10, pde=pde, grid=data.grid)

        def loss(z):
            return guidance.loss(z, 9)  # the late phase: observation and PDE terms

    assert torch.autograd.gradcheck(loss, (_perturbed(x),), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_pde_term_is_zero_at_the_solution_and_differentiable(darcy):
    data, norm, _, x = darcy
    pde = PDETerm(pdes.get("darcy"), ["a", "u"], norm, data.grid)
    assert pde(x).abs().max() < 1e-3 * pde(_perturbed(x)).abs().max()
    assert torch.autograd.gradcheck(
        lambda z: pde(z).square().sum(), (_perturbed(x, 1),), eps=1e-6, atol=1e-5, rtol=1e-4
    )


def test_pde_with_other_variables_is_refused(darcy):
    data, norm, _, _ = darcy
    with pytest.raises(ValueError, match="does not have"):
        PDETerm(pdes.get("poisson"), ["a", "u"], norm, data.grid)
