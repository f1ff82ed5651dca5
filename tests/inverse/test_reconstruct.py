"""reconstruct(): output layout, reproducibility per member, and refusals before sampling."""

import numpy as np
import pytest
import torch

from sciml_diffusion.fields import Observations
from sciml_diffusion.inverse import reconstruct
from tests.inverse.conftest import gaussian_case


@pytest.fixture(scope="module")
def case():
    return gaussian_case(1, "grf", sensors=5, noise_std=0.05)


def test_dataset_layout_and_attrs(case):
    prior, _, obs = case
    ds = reconstruct(prior, obs, "mmps", members=3, steps=4, generator=11, progress=False)
    assert ds["u"].dims == ("member", "x") and ds.sizes["member"] == 3
    assert {"u_mean", "u_std", "sensor_x", "u_observed"} <= set(ds.data_vars)
    np.testing.assert_allclose(ds["u_mean"], ds["u"].mean("member"), rtol=1e-5, atol=1e-6)
    assert ds.attrs["method"] == "mmps" and ds.attrs["seed"] == 11
    assert ds.attrs["steps"] == 4 and ds.attrs["nfe"] == 7  # Heun: 2 * 4 - 1
    assert ds.attrs["vjp"] == 7 * (5 + 1)  # 5 CG iterations + the final pull-back


@pytest.mark.parametrize("method", ["mmps", "dps"])
def test_member_reproducible_from_seed_whatever_the_batch(case, method):
    prior, _, obs = case
    big = reconstruct(prior, obs, method, members=4, steps=6, generator=5, progress=False)
    small = reconstruct(
        prior, obs, method, members=2, steps=6, generator=5, batch_size=1, progress=False
    )
    np.testing.assert_allclose(big["u"][:2], small["u"], rtol=1e-5, atol=1e-5)
    assert not np.allclose(big["u"][0], big["u"][1])


def test_bad_inputs_are_refused_before_sampling(case):
    prior, _, obs = case
    calls = []
    original = prior.denoiser.forward
    prior.denoiser.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        outside = Observations([[1.7]], [[0.0]], variables=["u"], noise_std=0.1)
        with pytest.raises(ValueError, match="outside the grid"):
            reconstruct(prior, outside, progress=False)
        unknown = Observations([[0.3]], [[0.0]], variables=["p"], noise_std=0.1)
        with pytest.raises(ValueError, match="not among the prior"):
            reconstruct(prior, unknown, progress=False)
        noiseless = Observations([[0.3]], [[0.0]], variables=["u"], noise_std=0.0)
        with pytest.raises(ValueError, match="positive sensor noise"):
            reconstruct(prior, noiseless, method="mmps", progress=False)
        with pytest.raises(ValueError, match="does not have"):
            reconstruct(prior, obs, method="fundps", pde="darcy", progress=False)
        with pytest.raises(ValueError, match="unknown method"):
            reconstruct(prior, obs, method="magic", progress=False)
        all_nan = Observations([[0.3]], [[float("nan")]], variables=["u"], noise_std=0.1)
        with pytest.warns(UserWarning), pytest.raises(ValueError, match="every observed"):
            reconstruct(prior, all_nan, progress=False)
    finally:
        prior.denoiser.forward = original
    assert not calls


def test_nan_readings_are_dropped_not_used(case):
    prior, _, obs = case
    values = obs.values.clone()
    values[..., 0, 0] = float("nan")
    partial = Observations(obs.coords, values, ["u"], obs.noise_std, obs.axes)
    with pytest.warns(UserWarning, match="1 sensor"):
        ds = reconstruct(prior, partial, "mmps", members=2, steps=4, progress=False)
    assert torch.isfinite(torch.as_tensor(ds["u"].values)).all()


@pytest.mark.parametrize("batch_size", [None, 3])
def test_several_cases_batched_match_each_case_alone(case, batch_size):
    prior, _, _ = case
    truths = prior.sample(2, steps=8, generator=9)
    obs = Observations.random(truths, count=4, seed=1, noise_std=0.05)
    run = dict(members=2, steps=4, generator=3, progress=False, batch_size=batch_size)
    both = reconstruct(prior, obs, "dps", **run)
    assert both["u"].dims == ("case", "member", "x") and both.attrs["cases"] == 2
    assert both["u_observed"].dims == ("case", "sensor")
    for c in range(2):
        alone = reconstruct(prior, obs, "dps", case=c, **{**run, "generator": 3 + c})
        np.testing.assert_allclose(both["u"][c], alone["u"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(both["u_mean"][c], alone["u_mean"], rtol=1e-5, atol=1e-5)
