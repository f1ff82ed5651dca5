"""The DiffusionPDE / FunDPS conventions reproduce the published data statistics.

Reference numbers: ``STATS`` in FunDPS ``utils/dataset_prop.py`` (Yao et al. 2025), the
pooled mean and std over every pixel of DiffusionPDE's training sets (50,000 samples at
128 x 128), and closed forms of their random fields. Our samples are compared within
four standard errors estimated from the samples themselves.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from sciml_diffusion import pdes
from sciml_diffusion.fields import Grid
from sciml_diffusion.pdes.diffusionpde import (
    cell_centred_grid,
    cosine_grf,
    cosine_grf_mean_square,
    spline_matrix,
)
from sciml_diffusion.pdes.recipes import load_recipe

#: FunDPS utils/dataset_prop.py: (mean, std) of channel (input, solution)
FUNDPS = {
    "poisson": {"f": (0.0, 0.2919494), "u": (9.67226952e-06, 0.00417478)},
    "helmholtz": {"f": (0.0, 0.2844538), "u": (1.05050595e-05, 0.00428004)},
    "darcy": {"u": (5.69201936e-03, 3.79030361e-03)},
    "navier_stokes": {"w0": (0.0, 0.26211293), "wT": (0.0, 0.2561266)},
}
RECIPES = Path(__file__).resolve().parents[2] / "datasets"


def pooled_stats(x: np.ndarray) -> tuple[float, float, float, float]:
    """Pooled mean and std of samples ``(N, ...)`` and their standard errors.

    The samples are independent, the pixels of one sample are not: the errors come from
    the spread of the per-sample means and mean squares.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    means = x.mean(axis=1)
    mean = means.mean()
    squares = ((x - mean) ** 2).mean(axis=1)
    std = np.sqrt(squares.mean())
    return mean, std, means.std(ddof=1) / np.sqrt(n), squares.std(ddof=1) / np.sqrt(n) / (2 * std)


def assert_matches(samples, reference, name):
    mean, std, mean_err, std_err = pooled_stats(samples)
    ref_mean, ref_std = reference
    assert abs(mean - ref_mean) < 4 * mean_err + 1e-12, (name, mean, ref_mean, mean_err)
    assert abs(std - ref_std) < 4 * std_err, (name, std, ref_std, std_err)
    assert std_err < 0.1 * ref_std  # the check is not vacuous


# ---------------------------------------------------------------------- random fields
@pytest.mark.parametrize(("zero_edges", "reference"), [(False, 0.2919494), (True, 0.2844538)])
def test_cosine_grf_closed_form_variance_is_fundps_measurement(zero_edges, reference):
    """Their GRF.m pooled variance, summed over the modes, is what FunDPS measured."""
    std = np.sqrt(cosine_grf_mean_square((128, 128), 2.0, 3.0, 3.0, zero_edges=zero_edges))
    assert std == pytest.approx(reference, rel=2e-3)


@pytest.mark.parametrize("zero_edges", [False, True])
def test_cosine_grf_samples_have_the_closed_form_variance(zero_edges):
    draws = np.stack(
        [cosine_grf((32, 32), 2.0, 3.0, 3.0, torch.Generator().manual_seed(i)) for i in range(400)]
    )
    if zero_edges:
        draws[:, 0] = draws[:, -1] = draws[:, :, 0] = draws[:, :, -1] = 0
    expected = np.sqrt(cosine_grf_mean_square((32, 32), 2.0, 3.0, 3.0, zero_edges=zero_edges))
    assert_matches(draws, (0.0, expected), "cosine grf")
    if not zero_edges:  # no constant mode: every draw has zero mean
        assert np.abs(draws.mean(axis=(1, 2))).max() < 1e-12


def test_navier_stokes_initial_vorticity_closed_form_and_samples():
    """Spectrum 2 sigma^2 lambda_k on the grid's modes: std 0.262 at 128, mean exactly 0."""
    problem = pdes.get("navier_stokes", convention="diffusionpde")
    grid = problem.default_grid(128)
    variance = float(problem.grf.spectrum(grid, dtype=torch.float64).mean())
    assert np.sqrt(variance) == pytest.approx(FUNDPS["navier_stokes"]["w0"][1], rel=2e-3)
    w0 = torch.stack(
        [problem.initial_condition(grid, torch.Generator().manual_seed(i)) for i in range(200)]
    ).numpy()
    assert_matches(w0, FUNDPS["navier_stokes"]["w0"], "w0")
    assert np.abs(w0.mean(axis=(1, 2))).max() < 1e-12


def test_our_navier_stokes_initial_vorticity_has_zero_mean_too():
    problem = pdes.get("navier_stokes")
    grid = problem.default_grid(32)
    w0 = problem.initial_condition(grid, torch.Generator().manual_seed(0))
    assert abs(float(w0.mean())) < 1e-12


# ---------------------------------------------------------------------- solutions
@pytest.mark.parametrize("name", ["poisson", "helmholtz"])
def test_static_sets_match_fundps_statistics(name):
    data = pdes.get(name, convention="diffusionpde").generate(32, 128, seed=1)
    for var, reference in FUNDPS[name].items():
        assert_matches(data.xarray[var].values, reference, f"{name}.{var}")


def test_darcy_cell_centred_set_matches_fundps_statistics():
    data = pdes.get("darcy", convention="diffusionpde").generate(32, 128, seed=1)
    assert_matches(data.xarray["u"].values, FUNDPS["darcy"]["u"], "darcy.u")
    assert set(np.unique(data.xarray["a"].values)) == {3.0, 12.0}


def test_navier_stokes_final_vorticity_matches_fundps_statistics():
    problem = pdes.get("navier_stokes", convention="diffusionpde")
    data = problem.generate(8, 128, seed=1, batch_size=8)
    assert_matches(data.xarray["wT"].values, FUNDPS["navier_stokes"]["wT"], "wT")


def test_our_sources_are_the_documented_larger_ones():
    """Ours keep the constant mode and sigma = 10: about 5x their source amplitude."""
    ours = pdes.get("poisson").generate(16, 64, seed=0).xarray["f"].values
    theirs = pdes.get("poisson", convention="diffusionpde").generate(16, 64, seed=0)
    theirs = theirs.xarray["f"].values
    assert ours.std() > 3 * theirs.std()


# ---------------------------------------------------------------------- equations
@pytest.mark.parametrize("name", ["poisson", "helmholtz"])
def test_diffusionpde_sign_and_residual(name):
    """Their Poisson is Laplacian u = f; the residual vanishes on the generated pairs."""
    problem = pdes.get(name, convention="diffusionpde")
    data = problem.generate(2, 33, seed=0)
    fields = data.to_tensor(["f", "u"], dtype=torch.float64)
    r = problem.residual(fields, data.grid)
    assert float(r.abs().max()) < 1e-8 * float(fields[:, 0].abs().max()) * 33**2
    ours = pdes.get(name, convention="ours", sigma=problem.sigma)
    if name == "poisson":  # the opposite sign: the same f gives -u
        u_ours = ours.solve(data.xarray["f"].values[0].astype(np.float64), data.grid)
        assert np.allclose(u_ours, -data.xarray["u"].values[0], atol=1e-7)


def test_helmholtz_source_vanishes_on_the_boundary_rows():
    problem = pdes.get("helmholtz", convention="diffusionpde")
    f = problem.generate(2, 17, seed=0).xarray["f"].values
    for edge in (f[:, 0], f[:, -1], f[:, :, 0], f[:, :, -1]):
        assert np.all(edge == 0)
    assert np.all(f[:, 1:-1, 1:-1] != 0)


# ---------------------------------------------------------------------- Darcy layout
def test_spline_matrix_is_exact_on_cubics_and_extrapolates():
    source = (np.arange(9) + 0.5) / 9
    target = np.linspace(0, 1, 9)
    cubic = 1 - 2 * source + 3 * source**2 - source**3
    exact = 1 - 2 * target + 3 * target**2 - target**3
    assert np.allclose(spline_matrix(source, target) @ cubic, exact, atol=1e-12)


def test_darcy_cell_layout_changes_what_the_issue_measured():
    """Same a on the same 128 points: cell pipeline vs node layout differ by ~1.6 %."""
    cells = pdes.get("darcy", convention="diffusionpde")
    nodes = pdes.get("darcy")
    grid = cells.default_grid(128)
    assert grid == cell_centred_grid(128)
    a = cells.sample_input(grid, torch.Generator().manual_seed(3))
    u_cells = cells.solve(a, grid)
    u_nodes = nodes.solve(a, nodes.default_grid(128))
    gap = np.linalg.norm(u_cells - u_nodes) / np.linalg.norm(u_cells)
    assert 0.005 < gap < 0.04
    # no boundary points: u is 0 on the node layout's edges, not on the cell layout's
    assert np.all(u_nodes[0] == 0) and np.all(u_nodes[:, -1] == 0)
    edge = np.concatenate([u_cells[0], u_cells[-1], u_cells[:, 0], u_cells[:, -1]])
    assert np.abs(edge).mean() > 0.01 * np.abs(u_cells).max()


def test_darcy_cell_residual_is_small_inside_and_differentiable():
    problem = pdes.get("darcy", convention="diffusionpde")
    data = problem.generate(2, 64, seed=0)
    fields = data.to_tensor(["a", "u"], dtype=torch.float64).requires_grad_(True)
    r = problem.residual(fields, data.grid)
    assert r.shape == (2, 62, 62)
    assert float(r.detach().abs().median()) < 1e-2  # the source is 1; round trip error elsewhere
    r.pow(2).mean().backward()
    assert torch.isfinite(fields.grad).all()


def test_darcy_cell_layout_refuses_a_node_grid():
    with pytest.raises(ValueError, match="cell centres"):
        pdes.get("darcy", convention="diffusionpde").solve(np.ones((9, 9)), Grid.regular((9, 9)))


def test_unknown_convention_is_refused():
    with pytest.raises(ValueError, match="unknown data convention"):
        pdes.get("poisson", convention="fno")


# ---------------------------------------------------------------------- recipes
@pytest.mark.parametrize("problem", ["poisson", "helmholtz", "darcy", "navier_stokes"])
def test_fundps_recipes_name_their_files_and_use_the_convention(problem):
    recipe = load_recipe(RECIPES / f"{problem}_fundps.yaml")
    assert recipe.problem == problem
    assert recipe.parameters["convention"] == "diffusionpde"
    full = recipe.jobs("full")
    assert full[0].filename() == f"{problem}_fundps_full_train.nc"
    assert (full[0].resolution, full[0].samples) == (128, 50000)


# ---------------------------------------------------------------------- fixed nodes
@pytest.mark.parametrize(
    ("name", "convention", "fixed"),
    [
        ("poisson", "ours", {"u"}),
        ("helmholtz", "diffusionpde", {"u", "f"}),
        ("darcy", "ours", {"u"}),
        ("darcy", "diffusionpde", set()),
    ],
)
def test_fixed_nodes_are_where_the_data_hold_the_boundary_value(name, convention, fixed):
    problem = pdes.get(name, convention=convention)
    data = problem.generate(2, 17, seed=0)
    masks = problem.fixed_nodes(data.grid)
    assert set(masks) == fixed
    for var, mask in masks.items():
        assert mask.sum() == 4 * 16
        assert np.all(data.xarray[var].values[:, mask] == 0)
        assert np.all(data.xarray[var].values[:, ~mask] != 0)


def test_periodic_problems_fix_no_node():
    problem = pdes.get("navier_stokes")
    assert problem.fixed_nodes(problem.default_grid(16)) == {}
