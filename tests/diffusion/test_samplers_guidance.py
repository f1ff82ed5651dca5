"""The guidance interface of the samplers: wrapping the denoiser, differentiable steps."""

import pytest
import torch

from sciml_diffusion.diffusion import SAMPLERS, GaussianDenoiser, WhiteNoise, edm_sigmas
from sciml_diffusion.fields import GaussianRandomField, Grid


class Probe:
    """Wraps the denoiser (counting calls) and differentiates through every step."""

    differentiable = True

    def __init__(self):
        self.calls, self.grads = 0, []

    def wrap(self, denoiser):
        def counted(x, sigma):
            self.calls += 1
            return denoiser(x, sigma)

        return counted

    def __call__(self, x_next, *, x, denoised, sigma, sigma_next, index):
        assert x.requires_grad and torch.is_grad_enabled()
        (grad,) = torch.autograd.grad(denoised.sum() + x_next.sum(), x)
        self.grads.append(grad)
        return x_next


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_wraps_and_records_steps(sampler):
    grid = Grid.regular(16, periodic=True)
    noise = WhiteNoise()
    denoiser = GaussianDenoiser(GaussianRandomField(1.0, 5.0), noise, grid)
    x = 80 * torch.randn(3, 1, 16, generator=torch.Generator().manual_seed(0))
    probe = Probe()
    with torch.no_grad():  # the sampler turns autograd on for the step itself
        out = SAMPLERS[sampler](denoiser, x, edm_sigmas(5), noise=noise, grid=grid, guidance=probe)
    assert not out.requires_grad
    assert len(probe.grads) == 5 and all(torch.isfinite(g).all() for g in probe.grads)
    assert probe.calls >= 5  # every denoiser call went through the wrapper
