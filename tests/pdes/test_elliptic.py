"""Darcy, Poisson and Helmholtz: convergence, residuals, data sets, seeds, bad input."""

import math

import numpy as np
import pytest
import torch

from sciml_diffusion import pdes
from sciml_diffusion.fields import Grid
from sciml_diffusion.fields.dataset import FieldDataset

from .conftest import directional_derivative_error

RESOLUTIONS = (17, 33, 65)


def manufactured(x, y):
    """``u = sin(pi x) sin(2 pi y)`` (zero on the boundary) and its derivatives."""
    u = np.sin(np.pi * x) * np.sin(2 * np.pi * y)
    u_x = np.pi * np.cos(np.pi * x) * np.sin(2 * np.pi * y)
    u_y = 2 * np.pi * np.sin(np.pi * x) * np.cos(2 * np.pi * y)
    laplacian = -5 * np.pi**2 * u
    return u, u_x, u_y, laplacian


def darcy_case(grid):
    """Smooth ``a = 1 + x^2 + y`` and ``f = -div(a grad u)``."""
    y, x = np.meshgrid(*grid.coords, indexing="ij")
    u, u_x, u_y, lap = manufactured(x, y)
    a = 1 + x**2 + y
    f = -(2 * x * u_x + u_y + a * lap)
    return pdes.Darcy(source=0.0), {"a": a, "f": f}, u


def poisson_case(grid):
    y, x = np.meshgrid(*grid.coords, indexing="ij")
    u, _, _, lap = manufactured(x, y)
    return pdes.Poisson(), {"f": -lap}, u


def helmholtz_case(grid):
    y, x = np.meshgrid(*grid.coords, indexing="ij")
    u, _, _, lap = manufactured(x, y)
    k = 3.0
    return pdes.Helmholtz(wavenumber=k), {"f": lap + k**2 * u}, u


CASES = {"darcy": darcy_case, "poisson": poisson_case, "helmholtz": helmholtz_case}


def solve_case(name, n):
    grid = Grid.regular((n, n))
    problem, data, exact = CASES[name](grid)
    if name == "darcy":  # a variable source: solve through the shared sparse solver
        from sciml_diffusion.pdes.elliptic import solve_dirichlet

        u = solve_dirichlet(data["a"], data["f"], *grid.spacing)
    else:
        u = problem.solve(data["f"], grid)
    return grid, problem, data, exact, u


@pytest.mark.parametrize("name", CASES)
def test_manufactured_solution_converges_at_second_order(name):
    errors = []
    for n in RESOLUTIONS:
        _, _, _, exact, u = solve_case(name, n)
        errors.append(np.abs(u - exact).max())
    orders = [math.log2(e0 / e1) for e0, e1 in zip(errors, errors[1:])]
    assert errors[-1] < 2e-3
    assert all(1.9 < p < 2.1 for p in orders), (errors, orders)


@pytest.mark.parametrize("name", CASES)
def test_residual_is_zero_for_the_discrete_solution_and_small_for_the_exact(name):
    grid, problem, data, exact, u = solve_case(name, 33)
    names = [v.name for v in problem.variables]
    fields = {k: torch.as_tensor(v)[None] for k, v in data.items() if k in names}
    if name == "darcy":
        problem = pdes.Darcy(source=0.0)
        discrete = problem.residual({"a": fields["a"], "u": torch.as_tensor(u)[None]}, grid)
        discrete = discrete - torch.as_tensor(data["f"][1:-1, 1:-1])  # f varies here
        continuum = problem.residual({"a": fields["a"], "u": torch.as_tensor(exact)[None]}, grid)
        continuum = continuum - torch.as_tensor(data["f"][1:-1, 1:-1])
    else:
        discrete = problem.residual({**fields, "u": torch.as_tensor(u)[None]}, grid)
        continuum = problem.residual({**fields, "u": torch.as_tensor(exact)[None]}, grid)
    scale = np.abs(data["f"]).max()
    assert discrete.shape == (1, 31, 31)
    assert float(discrete.abs().max()) < 1e-10 * scale
    assert float(continuum.abs().max()) < 5e-2 * scale  # O(h^2) truncation error


@pytest.mark.parametrize("name", CASES)
def test_generated_data_have_small_residual_and_perturbed_data_a_large_one(name):
    problem = pdes.get(name)
    data = problem.generate(3, 33, seed=4)
    assert isinstance(data, FieldDataset)
    fields = data.to_tensor([v.name for v in problem.variables], dtype=torch.float64)
    residual = problem.residual(fields, data.grid).abs().max()
    perturbed = fields.clone()
    perturbed[:, 1] *= 1 + 0.01 * torch.randn(perturbed[:, 1].shape, dtype=torch.float64)
    perturbed_residual = problem.residual(perturbed, data.grid).abs().max()
    assert residual < 1e-3  # float32 storage of u
    assert perturbed_residual > 100 * residual


@pytest.mark.parametrize("name", CASES)
def test_residual_is_differentiable(name):
    problem = pdes.get(name)
    data = problem.generate(2, 17, seed=1)
    fields = data.to_tensor([v.name for v in problem.variables])
    fields = fields + 0.01 * torch.randn(fields.shape, generator=torch.Generator().manual_seed(0))
    error = directional_derivative_error(lambda x: problem.residual(x, data.grid), fields)
    assert error < 1e-3  # float32 central difference, relative step 1e-3


def test_residual_accepts_a_dataset_and_runs_in_float32():
    problem = pdes.get("darcy")
    data = problem.generate(2, 17, seed=0)
    from_dataset = problem.residual(data, data.grid)
    from_tensor = problem.residual(data.to_tensor(["a", "u"]), data.grid)
    assert from_tensor.dtype == torch.float32 and from_dataset.shape == (2, 15, 15)
    torch.testing.assert_close(from_dataset.float(), from_tensor, rtol=0, atol=1e-3)


def test_darcy_data_follow_the_recipe():
    data = pdes.get("darcy").generate(16, 17, seed=0)
    ds = data.xarray
    assert set(np.unique(ds["a"].values)) == {3.0, 12.0}
    assert 0.3 < float((ds["a"] == 12).mean()) < 0.7  # P(GRF >= 0) = 1/2
    u = ds["u"].values
    assert np.all(u[:, [0, -1], :] == 0) and np.all(u[:, :, [0, -1]] == 0)
    assert u.min() >= 0  # f = 1 > 0 and the maximum principle
    assert ds.attrs["problem"] == "darcy" and ds.attrs["seed"] == 0
    assert ds.attrs["param_tau"] == 3.0 and "sciml_diffusion_version" in ds.attrs
    assert ds["x"].attrs["axis"] == "X" and ds["x"].values[-1] == 1.0
    assert ds["a"].dims == ("sample", "y", "x")


def test_same_seed_same_data_and_independent_of_workers():
    problem = pdes.get("darcy")
    one = problem.generate(3, 17, seed=7, workers=1).xarray
    again = problem.generate(3, 17, seed=7, workers=1).xarray
    two = problem.generate(3, 17, seed=7, workers=2).xarray
    other = problem.generate(3, 17, seed=8, workers=1).xarray
    np.testing.assert_array_equal(one["u"].values, again["u"].values)
    np.testing.assert_array_equal(one["u"].values, two["u"].values)
    np.testing.assert_array_equal(one["a"].values, two["a"].values)
    assert not np.array_equal(one["a"].values, other["a"].values)


def test_sample_i_does_not_depend_on_the_sample_count():
    problem = pdes.get("poisson")
    few = problem.generate(2, 17, seed=3).xarray
    many = problem.generate(5, 17, seed=3).xarray
    np.testing.assert_array_equal(few["f"].values, many["f"].values[:2])


@pytest.mark.parametrize("name", CASES)
def test_too_small_or_periodic_grids_are_refused(name):
    problem = pdes.get(name)
    with pytest.raises(ValueError, match="too small for the five-point scheme"):
        problem.generate(1, 4)
    with pytest.raises(ValueError, match="non-periodic grid"):
        problem.generate(1, Grid.regular((16, 16), periodic=True))


def test_helmholtz_refuses_a_resonant_wavenumber():
    grid = Grid.regular((9, 9))
    from sciml_diffusion.pdes.elliptic import laplacian_eigenvalues

    k = math.sqrt(laplacian_eigenvalues(grid)[0, 0])
    with pytest.raises(ValueError, match="eigenvalue"):
        pdes.Helmholtz(wavenumber=k).generate(1, grid)


def test_darcy_refuses_non_positive_permeability():
    with pytest.raises(ValueError, match="low permeability must be positive"):
        pdes.Darcy(low=0.0)
