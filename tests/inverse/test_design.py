"""Sensor design against exact answers: a GRF prior, point sensors, Gaussian noise.

For a Gaussian prior the posterior covariance is closed-form, so the EIG of any sensor set
is ``½ log det(I + Σ_S / s²)`` and greedy D-optimal selection can be computed by brute
force; every estimator and selection here is checked against those.
"""

import math
import sys

import numpy as np
import pytest
import torch

from sciml_diffusion.fields import Observations
from sciml_diffusion.inverse import gaussian_posterior
from sciml_diffusion.inverse.design import (
    candidate_sensors,
    ensemble_eig,
    extend_observations,
    gaussian_eig,
    select,
    square_root_update,
    suggest_sensors,
)
from tests.inverse.conftest import gaussian_case


def _posterior_at_nodes(prior, obs):
    """Exact posterior mean ``(N,)`` and covariance ``(N, N)`` at the grid nodes (one channel)."""
    mean, _, cov = gaussian_posterior(prior, obs, covariance=True)
    return mean.reshape(-1), cov


def _node_index(grid, coords):
    index = [
        np.argmin(np.abs(c[None, :] - coords[:, [a]]), axis=1) for a, c in enumerate(grid.coords)
    ]
    return np.ravel_multi_index(index, grid.shape)


def _brute_force_greedy(cov, noise, allowed, k):
    """Greedy D-optimal selection by evaluating ``½ log det`` of every enlarged set."""
    chosen, gains, current = [], [], 0.0
    for _ in range(k):
        best, best_value = None, -math.inf
        for j in allowed:
            if j in chosen:
                continue
            S = [*chosen, j]
            value = float(gaussian_eig(cov[np.ix_(S, S)], torch.full((len(S),), noise)))
            if value > best_value + 1e-12:
                best, best_value = j, value
        chosen.append(best)
        gains.append(best_value - current)
        current = best_value
    return chosen, gains, current


@pytest.mark.parametrize("ndim", [1, 2])
def test_exact_greedy_matches_brute_force_d_optimal(ndim):
    prior, _, obs = gaussian_case(ndim=ndim, sensors=5, noise_std=0.1)
    grid = prior.grid
    _, cov = _posterior_at_nodes(prior, obs)
    placed = set(_node_index(grid, obs.coords).tolist())
    allowed = [j for j in range(grid.size) if j not in placed]
    expected, gains, total = _brute_force_greedy(cov, 0.1, allowed, 4)

    proposed = suggest_sensors(prior, obs, 4, "eig", exact=True)
    assert _node_index(grid, proposed.coords).tolist() == expected
    np.testing.assert_allclose(proposed.value.numpy(), gains, rtol=1e-6)
    # the chain rule: per-pick gains add up to the batch EIG in closed form
    np.testing.assert_allclose(proposed.eig["exact"][0], total, rtol=1e-6)
    # equal noise everywhere: greedy variance with re-conditioning picks the same
    greedy = suggest_sensors(prior, obs, 4, "greedy", exact=True)
    assert _node_index(grid, greedy.coords).tolist() == expected


def test_design_beats_random_and_one_shot_variance_exactly():
    prior, _, obs = gaussian_case(ndim=2, sensors=4, noise_std=0.1)
    eig = suggest_sensors(prior, obs, 6, "eig", exact=True).eig["exact"][0]
    top = suggest_sensors(prior, obs, 6, "variance", exact=True).eig["exact"][0]
    rand = [
        suggest_sensors(prior, obs, 6, "random", exact=True, generator=s).eig["exact"][0]
        for s in range(8)
    ]
    assert eig >= top - 1e-9 and eig > max(rand)


def test_square_root_update_is_the_kalman_covariance():
    g = torch.Generator().manual_seed(0)
    root = torch.randn(7, 5, generator=g, dtype=torch.float64)
    cov = root.T @ root
    after = square_root_update(root, 2, 0.3)
    expected = cov - torch.outer(cov[:, 2], cov[2]) / (cov[2, 2] + 0.3)
    torch.testing.assert_close(after.T @ after, expected)


def _exact_case(sensors=3, noise=0.2):
    """Closed-form EIG of 3 new readings and a sampler of exact posterior members there."""
    prior, _, obs = gaussian_case(ndim=1, sensors=6, noise_std=0.05)
    mean, cov = _posterior_at_nodes(prior, obs)
    S = [3, 14, 27][:sensors]
    cov_s, mean_s = cov[np.ix_(S, S)], mean[S]
    exact = float(gaussian_eig(cov_s, torch.full((sensors,), noise)))
    factor = torch.linalg.cholesky(cov_s + 1e-12 * torch.eye(sensors, dtype=torch.float64))

    def draw(m, seed):
        z = torch.randn(
            m, sensors, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        return mean_s + z @ factor.T

    return exact, noise, draw


def test_ensemble_eig_converges_to_closed_form():
    exact, noise, draw = _exact_case()
    assert 0.5 < exact < 3.0  # an EIG the estimators can resolve
    errors, stderrs = [], []
    for m in (32, 256, 2048):
        value, se = ensemble_eig(draw(m, m), noise, "gaussian")
        errors.append(abs(value - exact))
        stderrs.append(se)
        assert se > 0 and abs(value - exact) < 4 * se + 2.0 / m
    assert errors[-1] < 0.05 and stderrs[0] > 4 * stderrs[-1]  # ~ 1/sqrt(M)


@pytest.mark.parametrize("estimator, side", [("pce", -1), ("nmc", 1)])
def test_contrastive_estimators_bracket_and_converge(estimator, side):
    exact, noise, draw = _exact_case()
    g = torch.Generator().manual_seed(1)
    values = []
    for m in (64, 1024):
        value, se = ensemble_eig(draw(m, m + 1), noise, estimator, draws=4, generator=g)
        assert se > 0
        # pce is a lower bound, nmc an upper bound (in expectation): allow 3 standard errors
        assert side * (value - exact) > -3 * se
        values.append(value)
    assert (
        abs(values[-1] - exact) < 0.1 and abs(values[-1] - exact) <= abs(values[0] - exact) + 0.02
    )
    assert ensemble_eig(draw(64, 3), noise, "pce", generator=g)[0] <= math.log(64)


def test_ensemble_design_with_exact_members_matches_exact_greedy():
    prior, _, obs = gaussian_case(ndim=1, sensors=6, noise_std=0.1)
    mean, cov = _posterior_at_nodes(prior, obs)
    z = torch.randn(
        4000, len(mean), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    values, vectors = torch.linalg.eigh(cov)
    members = mean + z @ (vectors * values.clamp_min(0).sqrt()).T
    ensemble = prior.grid.xarray_coords()
    import xarray as xr

    ds = xr.Dataset(
        {"u": (("member", *prior.grid.axes), members.reshape(-1, *prior.grid.shape).numpy())},
        coords=ensemble,
    )
    sampled = suggest_sensors(prior, obs, 3, "eig", ensemble=ds)
    exact = suggest_sensors(prior, obs, 3, "eig", exact=True)
    # near-tied neighbours may swap under sampling error: compare what the picks are worth
    picks = _node_index(prior.grid, sampled.coords).tolist()
    worth = float(gaussian_eig(cov[np.ix_(picks, picks)], torch.full((3,), 0.1)))
    assert worth > 0.99 * exact.eig["exact"][0]
    np.testing.assert_allclose(sampled.eig["gaussian"][0], exact.eig["exact"][0], rtol=0.03)
    np.testing.assert_allclose(sampled.value.numpy(), exact.value.numpy(), rtol=0.05)


def test_suggest_with_the_sampler_finds_near_optimal_sensors():
    prior, _, obs = gaussian_case(ndim=1, sensors=6, noise_std=0.1)
    _, cov = _posterior_at_nodes(prior, obs)
    proposed = suggest_sensors(prior, obs, 3, "eig", members=24, steps=8, generator=0)
    picks = _node_index(prior.grid, proposed.coords).tolist()
    batch = float(gaussian_eig(cov[np.ix_(picks, picks)], torch.full((3,), 0.1)))
    best = suggest_sensors(prior, obs, 3, "eig", exact=True).eig["exact"][0]
    assert batch > 0.9 * best
    assert set(proposed.eig) == {"gaussian", "pce", "nmc"}
    assert proposed.eig["pce"][0] <= math.log(24) + 1e-9


def test_variance_criterion_is_top_k_and_random_is_reproducible():
    root = torch.tensor([[1.0, 3.0, 2.0, 0.5]], dtype=torch.float64)
    picks, values, first = select(root, torch.full((4,), 0.1), 2, "variance")
    assert picks == [1, 2] and values[0] == pytest.approx(9.1)
    a = select(root, torch.ones(4), 2, "random", generator=torch.Generator().manual_seed(3))[0]
    b = select(root, torch.ones(4), 2, "random", generator=torch.Generator().manual_seed(3))[0]
    assert a == b and len(set(a)) == 2


def test_pce_selection_prefers_the_uncertain_reading():
    g = torch.Generator().manual_seed(0)
    members = torch.randn(64, 3, generator=g, dtype=torch.float64) * torch.tensor([0.1, 3.0, 1.0])
    mean = members.mean(0)
    root = (members - mean) / math.sqrt(63)
    picks, values, _ = select(root, torch.full((3,), 0.2**2), 2, "eig", mean, "pce", g)
    assert picks == [1, 2] and values[0] > values[1] > 0


def test_candidates_skip_placed_sensors_and_follow_masks_and_files():
    prior, _, obs = gaussian_case(ndim=2, sensors=5)
    grid = prior.grid
    pool = candidate_sensors(grid, prior.variables, obs)
    assert len(pool) == grid.size - 5
    mask = np.zeros(grid.shape, dtype=bool)
    mask[2:4, 2:4] = True
    assert (
        len(candidate_sensors(grid, prior.variables, obs, mask))
        == 4 - np.isin(_node_index(grid, obs.coords), np.flatnonzero(mask)).sum()
    )
    admissible = Observations(np.array([[0.1, 0.2], [0.5, 0.5]]), variables=["u"], axes=grid.axes)
    assert len(candidate_sensors(grid, prior.variables, obs, admissible)) == 2


def test_extend_observations_appends_readings():
    prior, _, obs = gaussian_case(ndim=1, sensors=4)
    proposed = suggest_sensors(prior, obs, 2, "random", generator=1)
    more = extend_observations(obs, proposed, torch.tensor([1.0, 2.0]))
    assert len(more) == 6 and more.values[-2:, 0].tolist() == [1.0, 2.0]
    assert len(candidate_sensors(prior.grid, prior.variables, more)) == prior.grid.size - 6


@pytest.fixture
def no_sampling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("sampling started before the inputs were checked")

    monkeypatch.setattr(sys.modules["sciml_diffusion.inverse.reconstruct"], "reconstruct", refuse)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(k=40), "only 26 candidate readings remain"),
        (dict(members=4), "needs an ensemble of at least 5 members"),
        (dict(candidates=Observations([[1.5]], variables=["u"])), "outside the grid"),
        (
            dict(candidates=Observations([[0.5]], variables=["a"])),
            "not among the prior's variables",
        ),
        (dict(criterion="best"), "unknown criterion"),
        (dict(k=0), "positive integer"),
        (dict(noise_std=0.0), "positive sensor noise std"),
    ],
)
def test_bad_input_fails_before_sampling(no_sampling, change, message):
    prior, _, obs = gaussian_case(ndim=1, sensors=6)
    args = dict(k=3, criterion="eig", members=16) | change
    with pytest.raises(ValueError, match=message):
        suggest_sensors(prior, obs, **args)


def test_observations_on_a_variable_the_prior_lacks(no_sampling):
    prior, _, _ = gaussian_case(ndim=1)
    obs = Observations([[0.5]], values=[[1.0]], variables=["p"], noise_std=0.1)
    with pytest.raises(ValueError, match="not among the prior's variables"):
        suggest_sensors(prior, obs, 1)


def _experiment():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "experiments" / "sensor_design" / "run.py"
    spec = importlib.util.spec_from_file_location("sensor_design_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path.parent


@pytest.mark.parametrize("name", ["quick.json", "full.json"])
def test_experiment_configs_name_valid_settings(name):
    import json

    from sciml_diffusion.inverse.design import CRITERIA, min_members

    _, folder = _experiment()
    config = json.loads((folder / name).read_text())
    assert set(config["criteria"]) <= set(CRITERIA) and "random" in config["criteria"]
    darcy = config["darcy"]
    assert darcy["members"] >= min_members("eig", darcy["add"])


def test_sensors_saved_interpolates_between_rounds():
    run, _ = _experiment()
    random = ([8, 16, 24, 32], [0.5, 0.45, 0.42, 0.40])
    design = ([8, 16, 24, 32], [0.5, 0.44, 0.38, 0.35])  # reaches 0.40 two thirds of 16 -> 24
    saved = run.sensors_saved(design, random)
    assert saved["n_design"] == pytest.approx(16 + 8 * 4 / 6)
    assert saved["ratio"] == pytest.approx(32 / saved["n_design"])
    assert saved["ratio_added"] == pytest.approx(24 / (saved["n_design"] - 8))
    assert run.sensors_saved(random, design)["n_design"] is None  # never reaches it


def test_two_variables_the_less_noisy_one_is_read_first():
    from sciml_diffusion.diffusion import GRFNoise
    from sciml_diffusion.fields import GaussianRandomField, Grid
    from sciml_diffusion.inverse import GaussianPrior

    grid = Grid.regular((16,), periodic=True)
    noise = GRFNoise.unit_variance(grid, 1.0, 10.0)
    field = GaussianRandomField(1.5, 3.0, sigma=9.0)
    prior = GaussianPrior(field, noise, grid, ["a", "u"], mean=[1.0, 2.0])
    truth = prior.sample(1, steps=8, generator=0)
    obs = Observations.per_variable(truth, count=3, noise_std=0.1)
    pool = candidate_sensors(grid, prior.variables, obs)
    assert len(pool) == 2 * 16 - 6
    for quiet, loud in (("a", "u"), ("u", "a")):
        proposed = suggest_sensors(
            prior, obs, 3, "eig", exact=True, noise_std={quiet: 0.05, loud: 5.0}
        )
        assert proposed.variable == (quiet,) * 3 and proposed.variables == (quiet,)
        # the per-pick gains still add up to the closed-form EIG of the batch
        assert float(proposed.value.sum()) == pytest.approx(proposed.eig["exact"][0], rel=1e-6)
    with pytest.raises(ValueError, match="no value for candidate variable"):
        suggest_sensors(prior, obs, 1, "eig", exact=True, noise_std={"a": 0.1})


def test_plot_design_maps_the_criterion_in_1d(tmp_path):
    prior, _, obs = gaussian_case(ndim=1, sensors=4)
    proposed = suggest_sensors(prior, obs, 3, "eig", exact=True)
    assert np.isfinite(proposed.scores.numpy()).all() and len(proposed.scores) == 28
    from sciml_diffusion.inverse.design import plot_design

    plot_design(proposed, obs, path=tmp_path / "design.png")
    assert (tmp_path / "design.png").stat().st_size > 0
