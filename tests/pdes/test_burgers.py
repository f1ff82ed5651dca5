"""Burgers: agreement with Cole–Hopf, residuals, data."""

import numpy as np
import pytest
import torch

from sciml_diffusion import pdes
from sciml_diffusion.pdes.burgers import cole_hopf

from .conftest import directional_derivative_error


def smooth_case(grid):
    """``u0 = sin(2 pi x) + cos(4 pi x) / 2`` and its periodic potential."""
    x = grid.coords[0]
    u0 = np.sin(2 * np.pi * x) + 0.5 * np.cos(4 * np.pi * x)
    potential = (1 - np.cos(2 * np.pi * x)) / (2 * np.pi) + 0.5 * np.sin(4 * np.pi * x) / (
        4 * np.pi
    )
    return torch.as_tensor(u0)[None], potential


@pytest.mark.parametrize("viscosity", [0.05, 0.02])
def test_agrees_with_cole_hopf(viscosity):
    problem = pdes.Burgers(viscosity=viscosity, final_time=0.5, steps=5, dt=1e-3)
    grid = problem.default_grid(256)
    u0, potential = smooth_case(grid)
    frames = problem.solve(u0, grid)[0].numpy()
    fine = grid.with_shape(4096)
    exact = cole_hopf(smooth_case(fine)[1], fine.coords[0], problem.times, viscosity)[:, ::16]
    error = np.abs(frames - exact).max() / np.abs(exact).max()
    assert error < 1e-6


def test_residual_of_data_small_and_of_perturbed_data_large():
    problem = pdes.Burgers(steps=100)
    data = problem.generate(2, 128, seed=0)
    u = data.to_tensor(["u"], dtype=torch.float64)
    assert u.shape == (2, 101, 1, 128)
    residual = problem.residual(u, data.grid).abs()
    noise = torch.randn(u.shape, generator=torch.Generator().manual_seed(1), dtype=u.dtype)
    perturbed = problem.residual(u * (1 + 0.01 * noise), data.grid).abs()
    assert residual.max() < 0.1 * u.abs().max()  # O(interval^2): steepest at t = 0
    assert residual[:, 10:].max() < 1e-2 * u.abs().max()
    assert perturbed[:, 10:].max() > 100 * residual[:, 10:].max()


def test_residual_is_differentiable():
    problem = pdes.Burgers(final_time=0.1, steps=4)
    data = problem.generate(2, 64, seed=2)
    u = data.to_tensor(["u"])
    u = u * (1 + 0.05 * torch.randn(u.shape, generator=torch.Generator().manual_seed(2)))
    error = directional_derivative_error(lambda x: problem.residual(x, data.grid), u)
    assert error < 1e-3  # float32 central difference, relative step 1e-3


def test_same_seed_same_data_across_batch_sizes():
    problem = pdes.Burgers(final_time=0.2, steps=2)
    one = problem.generate(3, 64, seed=5, batch_size=3).xarray["u"].values
    two = problem.generate(3, 64, seed=5, batch_size=1).xarray["u"].values
    np.testing.assert_allclose(one, two, rtol=0, atol=1e-6)
    assert problem.generate(1, 64, seed=5).xarray.attrs["param_sigma"] == 25.0


def test_worker_processes_do_not_change_the_data():
    problem = pdes.Burgers(final_time=0.1, steps=2)
    one = problem.generate(4, 32, seed=9, batch_size=2, workers=1).xarray["u"].values
    two = problem.generate(4, 32, seed=9, batch_size=2, workers=2).xarray["u"].values
    np.testing.assert_array_equal(one, two)


def test_float32_integration_matches_float64():
    problem = pdes.Burgers(final_time=0.2, steps=2)
    single = problem.generate(2, 64, seed=3, dtype=torch.float32).xarray["u"].values
    double = problem.generate(2, 64, seed=3).xarray["u"].values
    np.testing.assert_allclose(single, double, rtol=0, atol=1e-4 * np.abs(double).max())


def test_cfl_and_bad_input():
    with pytest.raises(ValueError, match="violates the CFL condition"):
        pdes.Burgers(final_time=0.5, steps=1, dt=0.5).generate(1, 512)
    with pytest.raises(ValueError, match="viscosity must be positive"):
        pdes.Burgers(viscosity=0)
    with pytest.raises(ValueError, match="1-D"):
        pdes.Burgers().generate(1, pdes.get("navier_stokes").default_grid(16))


def test_progress_bar_moves_within_a_batch(monkeypatch):
    """One batch reports progress over time (not 0 % until the batch ends), same data."""
    from sciml_diffusion.pdes import evolution

    updates = []

    class Recorder(evolution.tqdm):
        def update(self, n=1):
            if not self.disable:
                updates.append((self.desc, n))
            return super().update(n)

    monkeypatch.setattr(evolution, "tqdm", Recorder)
    problem = pdes.get("burgers")
    quiet = problem.generate(2, 64, seed=1, batch_size=2).xarray["u"].values
    assert updates == []
    shown = problem.generate(2, 64, seed=1, batch_size=2, progress=True).xarray["u"].values
    assert updates == [("time", 1)] * problem.steps
    np.testing.assert_array_equal(shown, quiet)
