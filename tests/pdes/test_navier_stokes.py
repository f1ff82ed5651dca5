"""Navier–Stokes (vorticity form) and Kolmogorov flow: Taylor–Green decay, residuals, data."""

import math

import numpy as np
import pytest
import torch

from sciml_diffusion import pdes
from sciml_diffusion.fields import Grid

from .conftest import directional_derivative_error


def taylor_green(grid, k=2 * math.pi):
    """Vorticity ``2 k sin(kx) sin(ky)`` of the Taylor–Green vortex, ``(1, ny, nx)``."""
    y, x = grid.mesh(dtype=torch.float64)
    return (2 * k * torch.sin(k * x) * torch.sin(k * y))[None]


def test_taylor_green_decays_at_the_analytic_rate():
    nu, k = 1e-2, 2 * math.pi
    problem = pdes.NavierStokes(viscosity=nu, forcing=0.0, final_time=1.0, steps=10, dt=1e-2)
    grid = problem.default_grid(32)
    w0 = taylor_green(grid)
    frames = problem.solve(w0, grid)[0]
    for t, w in zip(problem.times, frames):
        exact = w0[0] * math.exp(-2 * nu * k**2 * t)
        assert float((w - exact).norm() / exact.norm()) < 1e-6  # float64


def test_taylor_green_has_zero_residual():
    problem = pdes.NavierStokes(viscosity=1e-2, forcing=0.0, final_time=1.0, steps=5)
    grid = problem.default_grid(16)
    frames = problem.solve(taylor_green(grid), grid)
    residual = problem.residual({"vorticity": frames}, grid)
    assert residual.shape == (1, 5, 16, 16)
    assert float(residual.abs().max()) < 1e-10 * float(frames.abs().max())


@pytest.fixture(scope="module")
def ns_data():
    problem = pdes.get("navier_stokes", steps=10, dt=1e-2)
    return problem, problem.generate(2, 32, seed=0)


def test_navier_stokes_data_layout(ns_data):
    problem, data = ns_data
    ds = data.xarray
    assert ds["vorticity"].dims == ("sample", "time", "y", "x")
    assert ds["w0"].dims == ("sample", "y", "x")
    np.testing.assert_allclose(ds["time"].values, np.linspace(0, 1, 11))
    np.testing.assert_array_equal(ds["w0"].values, ds["vorticity"].values[:, 0])
    np.testing.assert_array_equal(ds["wT"].values, ds["vorticity"].values[:, -1])
    assert ds["x"].attrs["periodic"] == 1 and ds.attrs["param_viscosity"] == 1e-3
    assert data.to_tensor(["w0", "wT"]).shape == (2, 2, 32, 32)


def test_navier_stokes_residual_of_data_is_small_and_of_perturbed_data_large(ns_data):
    problem, data = ns_data
    w = data.to_tensor(["vorticity"], dtype=torch.float64)
    residual = problem.residual(w, data.grid).abs().max()
    noise = torch.randn(w.shape, generator=torch.Generator().manual_seed(1), dtype=w.dtype)
    perturbed = problem.residual(w * (1 + 0.01 * noise), data.grid).abs().max()
    assert residual < 5e-4 * w.abs().max()  # O(interval^2), interval 0.1
    assert perturbed > 100 * residual


def test_navier_stokes_residual_is_differentiable(ns_data):
    problem, data = ns_data
    w = data.to_tensor(["vorticity"]).narrow(1, 0, 3)
    w = w * (1 + 0.05 * torch.randn(w.shape, generator=torch.Generator().manual_seed(2)))
    error = directional_derivative_error(lambda x: problem.residual(x, data.grid), w)
    assert error < 1e-3  # float32 central difference, relative step 1e-3


def test_navier_stokes_batch_size_and_seed(ns_data):
    problem, data = ns_data
    again = problem.generate(2, 32, seed=0, batch_size=1).xarray["vorticity"].values
    np.testing.assert_allclose(again, data.xarray["vorticity"].values, rtol=0, atol=1e-6)
    other = problem.generate(1, 32, seed=1).xarray["vorticity"].values
    assert not np.allclose(other[0], again[0])


def test_cfl_violating_step_is_refused():
    problem = pdes.NavierStokes(forcing=0.0, final_time=1.0, steps=1, dt=0.5)
    grid = problem.default_grid(64)
    with pytest.raises(ValueError, match="violates the CFL condition.*use dt <="):
        problem.solve(taylor_green(grid), grid)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"viscosity": 0.0}, "viscosity must be positive"),
        ({"viscosity": -1e-3}, "viscosity must be positive"),
        ({"dt": 0.0}, "time step dt must be positive"),
        ({"dt": -1e-3}, "time step dt must be positive"),
        ({"steps": 0}, "steps"),
        ({"dt": 0.5, "steps": 10}, "exceeds the save interval"),
    ],
)
def test_bad_parameters_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        pdes.NavierStokes(**options)


def test_navier_stokes_grid_checks():
    problem = pdes.get("navier_stokes")
    with pytest.raises(ValueError, match="too small for the pseudo-spectral scheme"):
        problem.generate(1, 4)
    with pytest.raises(ValueError, match="periodic grid"):
        problem.generate(1, Grid.regular((16, 16)))


def test_kolmogorov_is_chaotic_and_its_residual_small():
    problem = pdes.Kolmogorov(final_time=40.0, steps=40, dt=2e-2, spinup=0.0)
    grid = problem.default_grid(32)
    w0 = problem.initial_condition(grid, torch.Generator().manual_seed(0))
    nudge = 1e-6 * torch.randn(w0.shape, generator=torch.Generator().manual_seed(1))
    frames = problem.solve(torch.stack([w0, w0 + nudge.double()]), grid)
    gap = (frames[0] - frames[1]).flatten(1).norm(dim=1) / frames[0].flatten(1).norm(dim=1)
    assert gap[1] < 1e-4 and gap[-1] > 0.1  # 1e-6 grows to O(1): sensitive dependence
    assert float(frames[0, -1].std()) > 1.0  # sustained by the forcing, not decayed
    fine = pdes.Kolmogorov(final_time=0.1, steps=10, dt=1e-2, spinup=0.0)
    turbulent = fine.solve(frames[:, -1], grid)
    residual = fine.residual({"vorticity": turbulent}, grid).abs().max()
    noise = torch.randn(turbulent.shape, generator=torch.Generator().manual_seed(2)).double()
    perturbed = fine.residual({"vorticity": turbulent * (1 + 0.01 * noise)}, grid).abs().max()
    assert residual < 1e-2 * turbulent.abs().max()  # O(interval^2), interval 0.01
    assert perturbed > 100 * residual


def test_kolmogorov_data_discard_the_spinup():
    problem = pdes.Kolmogorov(final_time=1.0, steps=4, dt=2e-2, spinup=2.0)
    data = problem.generate(1, 16, seed=0).xarray
    np.testing.assert_allclose(data["time"].values, [2.0, 2.25, 2.5, 2.75, 3.0])
    assert data["x"].values[-1] == pytest.approx(2 * math.pi * 15 / 16)


def test_kolmogorov_refuses_an_unresolved_forcing():
    with pytest.raises(ValueError, match="forcing wavenumber 4 is not resolved"):
        pdes.Kolmogorov().generate(1, 12)


def test_kolmogorov_residual_with_drag_is_differentiable():
    problem = pdes.Kolmogorov(drag=0.1, final_time=0.1, steps=2, dt=1e-2, spinup=0.5)
    data = problem.generate(2, 16, seed=0)
    w = data.to_tensor(["vorticity"])
    w = w * (1 + 0.05 * torch.randn(w.shape, generator=torch.Generator().manual_seed(3)))
    residual = lambda x: problem.residual(x, data.grid)  # noqa: E731
    assert directional_derivative_error(residual, w) < 1e-2  # float32: rounding-limited
    assert directional_derivative_error(residual, w, dtype=torch.float64) < 1e-5


def test_velocity_of_a_shear_flow_has_the_right_sign():
    """``u = sin(2 pi y)`` has vorticity ``w = dv/dx - du/dy = -2 pi cos(2 pi y)``."""
    from sciml_diffusion.pdes.vorticity import VorticityEquation

    grid = Grid.regular((16, 16), periodic=True)
    y, x = grid.mesh(dtype=torch.float64)
    equation = VorticityEquation(grid, viscosity=1e-3)
    u, v = equation.velocity(equation.forward(-2 * math.pi * torch.cos(2 * math.pi * y)))
    torch.testing.assert_close(u, torch.sin(2 * math.pi * y), rtol=0, atol=1e-12)
    torch.testing.assert_close(v, torch.zeros_like(v), rtol=0, atol=1e-12)
    # a vorticity stripe sin(2 pi x) carried by this flow: u . grad w = sin(2pi y) 2pi cos(2pi x)
    stripe = torch.sin(2 * math.pi * x)
    w = -2 * math.pi * torch.cos(2 * math.pi * y) + stripe
    advection = equation.inverse(equation.advection(equation.forward(w)))
    v_stripe = -torch.cos(2 * math.pi * x) / (2 * math.pi)  # -d/dx of psi = stripe / (2pi)^2
    expected = torch.sin(2 * math.pi * y) * 2 * math.pi * torch.cos(2 * math.pi * x) + (
        v_stripe * (2 * math.pi) ** 2 * torch.sin(2 * math.pi * y)
    )
    torch.testing.assert_close(advection, expected, rtol=0, atol=1e-10)
