"""The closed-form Gaussian posterior against an independent route (precision form)."""

import pytest
import torch

from sciml_diffusion.inverse import gaussian_posterior, sensor_measurement
from tests.inverse.conftest import gaussian_case


@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("boundary", ["periodic", "dirichlet"])
def test_closed_form_matches_precision_form(ndim, boundary):
    prior, _, obs = gaussian_case(ndim, boundary=boundary, sensors=5, noise_std=0.3)
    grid = prior.grid
    mean, std = gaussian_posterior(prior, obs)
    m = sensor_measurement(obs, grid, ["u"], prior.normalizer)
    H = m.operator(torch.eye(grid.size, dtype=torch.float64).reshape(-1, 1, *grid.shape)).T
    spectrum = prior.field.spectrum(grid, dtype=torch.float64).reshape(-1)
    keep = spectrum > 0  # work in the modes with variance (Dirichlet ends have none)
    T = (
        prior.field.from_modes(
            torch.eye(grid.size, dtype=torch.float64).reshape(-1, *grid.shape), grid
        )
        .reshape(grid.size, grid.size)
        .T[:, keep]
    )  # columns: mode shapes at the nodes
    HT = H @ T
    precision = torch.diag(1 / spectrum[keep]) + HT.T @ HT / 0.3**2
    cov_modes = torch.linalg.inv(precision)
    mean_modes = cov_modes @ HT.T @ m.y.double() / 0.3**2
    torch.testing.assert_close(mean.reshape(-1) - 0.5, T @ mean_modes)
    torch.testing.assert_close(std.reshape(-1) ** 2, ((T @ cov_modes) * T).sum(-1))


def test_noise_free_sensors_are_interpolated_exactly():
    prior, truth, obs = gaussian_case(1, sensors=4, noise_std=0.0)
    mean, std = gaussian_posterior(prior, obs)
    m = sensor_measurement(obs, prior.grid, ["u"], prior.normalizer)
    at_sensors = m(mean[None].float() - 0.5)[0]
    torch.testing.assert_close(at_sensors, m.y, atol=1e-4, rtol=1e-4)
    assert m(std[None].float())[0].abs().max() < 1e-3
