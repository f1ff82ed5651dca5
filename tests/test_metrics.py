"""Ensemble scores against closed forms and known statistics."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from sciml_diffusion.metrics import (
    crps_ensemble,
    radial_power_spectrum,
    rank_histogram,
    relative_l2,
    spread_skill,
)


def gaussian_crps(mu, sigma, y):
    z = (y - mu) / sigma
    phi, cdf = stats.norm.pdf(z), stats.norm.cdf(z)
    return sigma * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))


@pytest.mark.parametrize("fair", [True, False])
def test_crps_of_a_large_gaussian_ensemble_matches_the_closed_form(fair):
    rng = np.random.default_rng(0)
    y = np.array([-1.0, 0.3, 2.5])
    members = 0.5 + 2.0 * rng.standard_normal((20000, 3))
    got = crps_ensemble(members, y, member_dim=0, fair=fair)
    assert np.allclose(got, gaussian_crps(0.5, 2.0, y), rtol=0.02)


def test_calibrated_ensemble_has_unit_spread_skill_and_flat_ranks():
    rng = np.random.default_rng(1)
    members, truth = rng.standard_normal((9, 40000)), rng.standard_normal(40000)
    assert spread_skill(members, truth)["ratio"] == pytest.approx(1.0, abs=0.03)
    counts = rank_histogram(members, truth)
    assert counts.shape == (10,) and stats.chisquare(counts).pvalue > 1e-3
    under = spread_skill(0.3 * members, truth)["ratio"]
    assert under < 0.5


def test_radial_spectrum_places_a_mode_in_its_shell_and_white_noise_flat():
    n = 32
    y, x = np.meshgrid(np.arange(n) / n, np.arange(n) / n, indexing="ij")
    field = torch.tensor(np.cos(2 * np.pi * (3 * x + 4 * y)))
    k, power = radial_power_spectrum(field)
    assert k[np.argmax(power)] == 5
    noise = torch.randn(400, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _, p = radial_power_spectrum(noise)
    assert np.allclose(p, 1.0, atol=0.15)  # white noise: flat at unit power


def test_relative_l2_and_shape_errors():
    target = torch.ones(2, 4, 4)
    assert torch.allclose(relative_l2(1.1 * target, target, ndim=2), torch.full((2,), 0.1))
    with pytest.raises(ValueError, match="does not match observation"):
        crps_ensemble(np.zeros((5, 3)), np.zeros(4))
