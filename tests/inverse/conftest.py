import pytest
import torch

from sciml_diffusion.diffusion import GRFNoise, WhiteNoise
from sciml_diffusion.fields import GaussianRandomField, Grid, Observations
from sciml_diffusion.inverse import GaussianPrior


def gaussian_case(ndim=1, noise_kind="grf", boundary="periodic", sensors=6, noise_std=0.05):
    """A GRF prior with its exact denoiser, one truth drawn from it, and point sensors."""
    shape = (32,) if ndim == 1 else (12, 12)
    grid = Grid.regular(shape, periodic=boundary == "periodic")
    field = GaussianRandomField(
        alpha=ndim / 2 + 1.0, tau=3.0, sigma=3.0 * 3.0**ndim, boundary=boundary
    )
    if noise_kind == "white":
        noise = WhiteNoise()
    else:
        noise = GRFNoise.unit_variance(grid, ndim / 2 + 0.5, 10.0, boundary=boundary)
    prior = GaussianPrior(field, noise, grid, variables=["u"], mean=0.5)
    generator = torch.Generator().manual_seed(3)
    truth = prior.sample(1, steps=24, generator=generator)
    obs = Observations.random(truth, count=sensors, seed=2, noise_std=noise_std)
    return prior, truth, obs


@pytest.fixture
def case1d():
    return gaussian_case()
