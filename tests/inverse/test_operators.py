"""Observation operators: units, NaN handling, bad input, the benchmark sensor protocol."""

import numpy as np
import pytest
import torch

from sciml_diffusion import pdes
from sciml_diffusion.fields import Grid, Normalizer, Observations
from sciml_diffusion.inverse import sensor_measurement


@pytest.fixture(scope="module")
def darcy():
    return pdes.get("darcy").generate(2, 16, seed=0)


def test_sensor_measurement_reads_normalised_values(darcy):
    norm = Normalizer.fit(darcy, ["a", "u"])
    obs = Observations.random(darcy.isel(sample=[1]), count=10, variables=["u"])
    m = sensor_measurement(obs, darcy.grid, ["a", "u"], norm, noise_std={"u": 1e-3})
    x = norm.normalize(darcy.to_tensor(["a", "u"])[1:])
    torch.testing.assert_close(m(x), m.y[None], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(m.std, torch.full((10,), 1e-3 / norm.std[1]))
    assert m.names == ("a", "u") and set(m.groups.tolist()) == {1}


def test_per_variable_protocol_draws_exactly_n_per_variable(darcy):
    obs = Observations.per_variable(
        darcy, index=1, count=20, variables=["a", "u"], exclude_boundary=True, seed=4
    )
    counts = np.isfinite(obs.values.numpy()).sum(0)
    assert counts.tolist() == [20, 20]
    grid = darcy.grid
    low = np.array([b[0] for b in grid.bounds])
    high = np.array([b[1] for b in grid.bounds])
    assert ((obs.coords > low + 1e-12) & (obs.coords < high - 1e-12)).all()
    # values are the fields at the nodes, noise-free
    m = sensor_measurement(obs, grid, ["a", "u"])
    torch.testing.assert_close(m(darcy.to_tensor(["a", "u"])[1:])[0], m.y)
    frac = Observations.per_variable(darcy, fraction=0.05, variables=["u"])
    assert len(frac) == round(0.05 * grid.size)


def test_nan_entries_are_not_observed_and_empty_sensors_warn():
    grid = Grid.regular((8, 8))
    values = torch.tensor([[1.0, np.nan], [np.nan, np.nan], [np.nan, 2.0]])
    obs = Observations([[0.1, 0.2], [0.5, 0.5], [0.9, 0.3]], values, variables=["a", "u"])
    with pytest.warns(UserWarning, match="1 sensor"):
        m = sensor_measurement(obs, grid, ["a", "u"])
    assert m.size == 2 and m.groups.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(variables=["b"]), "not among the prior"),
        (dict(coords=[[1.5, 0.2]]), "outside the grid"),
        (dict(noise_std=-1.0), "noise_std must be"),
    ],
)
def test_bad_observations_are_refused(change, message):
    grid = Grid.regular((8, 8))
    args = dict(coords=[[0.1, 0.2]], values=[[1.0]], variables=["u"], noise_std=0.1)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        obs = Observations(**args)
        sensor_measurement(obs, grid, ["u"])
