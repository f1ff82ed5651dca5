"""DYffusion: the interpolation schedule and the cold-sampling loop against the published
recurrence on a linear system whose exact interpolator is known; networks and losses."""

import math

import numpy as np
import pytest
import torch

from sciml_diffusion import forecast
from sciml_diffusion.forecast.dyffusion import MCDropoutFNO, cold_sample, interpolation_times
from tests.forecast.conftest import TINY


@pytest.mark.parametrize(
    "horizon, k, expected",
    [
        (5, 0, [0, 1, 2, 3, 4]),
        (5, 1, [0, 0.5, 1, 2, 3, 4]),  # the examples of the reference implementation
        (5, 2, [0, 1 / 3, 2 / 3, 1, 2, 3, 4]),
        (5, 3, [0, 0.25, 0.5, 0.75, 1, 2, 3, 4]),
        (2, 1, [0, 0.5, 1]),
    ],
)
def test_schedule_with_extra_substeps(horizon, k, expected):
    times = interpolation_times(horizon, k)
    assert len(times) == horizon + k
    assert np.allclose(times, expected)
    assert all(b > a for a, b in zip(times[:-1], times[1:]))


def test_schedule_rejects_bad_settings():
    with pytest.raises(ValueError, match="horizon >= 2"):
        interpolation_times(1)
    with pytest.raises(ValueError, match="extra_steps"):
        interpolation_times(4, -1)


# a linear system dx/dt = A x (a damped rotation) and its exact flow map
A = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=torch.float64)


def flow(s):
    return torch.linalg.matrix_exp(A * s)


def exact_interpolator(x0, h):
    """I(x0, x_end, i) = (1 - i/h) e^{A i} x0 + (i/h) e^{-A (h - i)} x_end: exact on the
    true trajectory, and a genuine function of both ends elsewhere."""

    def interpolate(x_end, i):
        w = i / h
        return (1 - w) * x0 @ flow(i).T + w * x_end @ flow(-(h - i)).T

    return interpolate


@pytest.mark.parametrize("k", [0, 1, 3])
def test_cold_sampling_with_exact_networks_recovers_the_trajectory(k):
    h = 4
    x0 = torch.tensor([[1.0, 0.0], [0.3, -2.0]], dtype=torch.float64)

    def forecast_exact(x_s, i):
        return x_s @ flow(h - i).T

    frames = cold_sample(
        exact_interpolator(x0, h), forecast_exact, x0, interpolation_times(h, k), h
    )
    truth = torch.stack([x0 @ flow(j).T for j in range(1, h + 1)], dim=1)
    assert frames.shape == (2, h, 2)
    assert torch.allclose(frames, truth, atol=1e-12)


@pytest.mark.parametrize("refine", [False, True])
def test_cold_sampling_loop_is_the_published_recurrence(refine):
    """With an imperfect forecaster the loop must still follow Algorithm 2 step by step:
    x_{n+1} = I(x0, F(x_n, i_n), i_{n+1}) - I(x0, F(x_n, i_n), i_n) + x_n."""
    h, k = 5, 2
    x0 = torch.tensor([[0.7, -0.4]], dtype=torch.float64)
    interp = exact_interpolator(x0, h)
    bias = torch.tensor([0.05, -0.02], dtype=torch.float64)

    def forecast_biased(x_s, i):
        return 1.1 * x_s @ flow(h - i).T + bias * math.cos(i)

    times = interpolation_times(h, k)
    got = cold_sample(interp, forecast_biased, x0, times, h, refine=refine)
    # the recurrence written out independently, with I(x0, ., 0) = x0 and I(x0, x, h) = x
    full = times + [h]
    x, states, x_end = x0, {}, None
    for n in range(len(times)):
        x_end = forecast_biased(x, full[n])
        now = x0 if full[n] == 0 else interp(x_end, full[n])
        ahead = x_end if full[n + 1] == h else interp(x_end, full[n + 1])
        x = ahead - now + x
        states[full[n + 1]] = x
    expected = [states[float(j)] for j in range(1, h + 1)]
    if refine:
        expected = [interp(x_end, float(j)) for j in range(1, h)] + [states[float(h)]]
    assert torch.allclose(got, torch.stack(expected, dim=1), atol=1e-12)


@pytest.mark.parametrize("ndim", [1, 2])
def test_mc_dropout_backbone_shape_backward_and_stochastic_at_inference(ndim):
    torch.manual_seed(0)
    net = MCDropoutFNO(
        dropout=0.3, channels=2, n_modes=[3] * ndim, width=8, n_layers=2, cond_channels=4
    )
    x = torch.randn(3, 2, *[8] * ndim)
    cond = torch.randn(3, 4, *[8] * ndim)
    out = net(x, torch.rand(3), cond=cond)
    assert out.shape == x.shape
    out.square().mean().backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None]
    assert not unused, f"parameters without gradient: {unused}"
    net.eval()
    with torch.no_grad():
        a, b = net(x, torch.rand(3), cond=cond), net(x, torch.rand(3), cond=cond)
    assert not torch.allclose(a, b)  # dropout stays on at inference (MC dropout)


def test_forecaster_loss_trains_through_the_frozen_interpolator(wave_data):
    model = forecast.DYffusion.create(
        wave_data,
        forecast.ForecastConfig(**dict(TINY, method="dyffusion", horizon=3, extra_steps=1)),
    )
    x, mask = torch.randn(4, 5, 1, 8, 8), torch.ones(4, 5, 1, 8, 8, dtype=torch.bool)
    interp = model.networks["interpolator"].requires_grad_(False)
    loss = model.stage_loss("forecaster")(
        model.networks["forecaster"], x, mask, torch.Generator().manual_seed(0)
    ).value()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.networks["forecaster"].parameters())
    assert all(p.grad is None for p in interp.parameters())
