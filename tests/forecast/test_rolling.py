"""Rolling diffusion: the local noise schedules against their formulas, window shifts,
the frame-wise denoiser."""

import numpy as np
import pytest
import torch

from sciml_diffusion.diffusion.backbone import ConditionalFNO
from sciml_diffusion.forecast.rolling import (
    RollingDenoiser,
    init_local_times,
    local_sigmas,
    rolling_local_times,
)


@pytest.mark.parametrize("window", [1, 3, 8])
def test_rolling_schedule_matches_formula_and_increases_with_lead(window):
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    tau = rolling_local_times(t, window)
    k = np.arange(window)
    expected = (k[None, :] + t.numpy()[:, None]) / window
    assert np.allclose(tau.numpy(), expected)
    assert torch.all(tau[:, 1:] > tau[:, :-1])  # later frames are noisier
    assert torch.all((tau >= 0) & (tau <= 1))
    # one shift: frame k at t = 0 is frame k - 1 at t = 1; the first frame ends clean
    assert torch.allclose(tau[0, 1:], tau[-1, :-1])
    assert tau[0, 0] == 0 and tau[-1, -1] == 1


@pytest.mark.parametrize("window", [2, 5])
def test_init_schedule_starts_from_pure_noise_and_ends_on_the_rolling_one(window):
    t = torch.linspace(0, 1, 21, dtype=torch.float64)
    tau = init_local_times(t, window)
    expected = np.clip(np.arange(window)[None, :] / window + t.numpy()[:, None], 0, 1)
    assert np.allclose(tau.numpy(), expected)
    assert torch.all(tau[-1] == 1)  # t = 1: every frame is noise
    assert torch.allclose(tau[0], rolling_local_times(torch.tensor(0.0), window))
    assert torch.all(tau[:, 1:] >= tau[:, :-1])


def test_local_sigmas_follow_the_edm_rho_schedule():
    tau = torch.linspace(0, 1, 9, dtype=torch.float64)
    sigma = local_sigmas(tau, 0.002, 80.0, rho=7.0)
    lo, hi = 0.002 ** (1 / 7), 80.0 ** (1 / 7)
    assert torch.allclose(sigma, (lo + tau * (hi - lo)) ** 7)
    assert sigma[0] == pytest.approx(0.002) and sigma[-1] == pytest.approx(80.0)
    assert torch.all(sigma[1:] > sigma[:-1])


@pytest.mark.parametrize("ndim", [1, 2])
def test_framewise_denoiser_shape_backward_and_clean_limit(ndim):
    window, channels, context = 3, 2, 2
    backbone = ConditionalFNO(
        channels=window * channels,
        n_modes=[3] * ndim,
        width=8,
        n_layers=1,
        cond_channels=context * channels + window,
    )
    model = RollingDenoiser(backbone, window, channels, sigma_data=1.0)
    y = torch.randn(4, window, channels, *[8] * ndim)
    ctx = torch.randn(4, context, channels, *[8] * ndim)
    sigma = local_sigmas(rolling_local_times(torch.rand(4), window)).float()
    out = model(y, sigma, ctx)
    assert out.shape == y.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    # at a tiny noise level a frame is (almost) returned as it is: c_skip -> 1, c_out -> 0
    tiny = torch.full((4, window), 1e-4)
    with torch.no_grad():
        assert torch.allclose(model(y, tiny, ctx), y, atol=1e-3)
