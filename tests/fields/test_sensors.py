"""Observations and the sensor operator A(x)."""

import numpy as np
import pytest
import torch

from sciml_diffusion.fields import FieldDataset, Grid, Observations


def multilinear(mesh, coefs):
    """a0 + sum_i a_i x_i + prod_i x_i: reproduced exactly by multilinear interpolation."""
    out = coefs[0] + sum(c * x for c, x in zip(coefs[1:], mesh))
    return out + torch.prod(mesh, dim=0)


@pytest.mark.parametrize("shape", [(9,), (7, 11), (5, 6, 7)])
@pytest.mark.parametrize("periodic", [False, True])
def test_operator_exact_on_multilinear_fields(shape, periodic):
    grid = Grid.regular(shape, lengths=2.0, periodic=periodic)
    rng = np.random.default_rng(0)
    if periodic:  # stay inside the last cell so no wrap-around is involved
        high = np.array([c[-1] for c in grid.coords])
    else:
        high = np.array([b[1] for b in grid.bounds])
    points = rng.uniform(0, high, size=(40, len(shape)))
    coefs = [0.3, -1.2, 0.7, 2.0][: len(shape) + 1]
    fields = multilinear(grid.mesh(torch.float64), coefs)[None, None]
    A = Observations(points, variables=["u"], axes=grid.axes).operator(grid)
    expected = multilinear(torch.as_tensor(points.T), coefs)
    assert torch.allclose(A(fields)[0, :, 0], expected, atol=1e-12)


def test_operator_is_exact_at_nodes_and_wraps_periodically():
    grid = Grid.regular((4, 5), periodic=True)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    nodes = np.array([[0.25, 0.4], [0.75, 0.0], [0.0, 0.8]])
    obs = Observations(nodes, variables=["c", "a"])
    got = obs.operator(grid, channels=["a", "b", "c"])(x)
    assert got.shape == (2, 3, 2)
    assert torch.equal(got[0, 0], x[0, [2, 0], 1, 2])
    midway = Observations([[0.875, 0.9]], variables=["a"]).operator(grid)(x[:, :1])
    corners = x[:, 0, [3, 3, 0, 0], [4, 0, 4, 0]]
    assert torch.allclose(midway[:, 0, 0], corners.mean(dim=1))


def test_operator_gradient_matches_finite_differences():
    grid = Grid.regular((6, 7))
    obs = Observations(np.random.default_rng(1).uniform(0, 1, (9, 2)), variables=["u"])
    A = obs.operator(grid)
    x = torch.randn(2, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(A, (x,), eps=1e-6, atol=1e-8)
    dense = A.dense()
    assert torch.allclose(A(x)[..., 0], x.flatten(-2)[:, 0] @ dense.T)


def test_random_uses_valid_points_and_adds_noise():
    grid = Grid.regular((12, 12))
    fields = torch.randn(20, 1, 12, 12)
    fields[:, :, :6] = float("nan")  # half the domain has no data
    ds = FieldDataset.from_tensor(fields, ["u"], grid=grid)
    obs = Observations.random(ds, fraction=0.25, seed=0)
    assert len(obs) == 36 and (obs.coords[:, 0] > grid.coords[0][5]).all()
    assert torch.equal(obs.values, obs.operator(grid)(ds.to_tensor()))
    noisy = Observations.random(ds, count=60, seed=0, noise_std=0.5)
    clean = noisy.operator(grid)(ds.to_tensor())
    residual = (noisy.values - clean).flatten()
    assert abs(float(residual.std()) - 0.5) < 0.05 and abs(float(residual.mean())) < 0.05


def test_xarray_round_trip():
    grid = Grid.regular((8, 8), periodic=True)
    ds = FieldDataset.from_tensor(torch.randn(3, 2, 8, 8), ["a", "u"], grid=grid)
    obs = Observations.random(ds, count=5, variables=["u"], seed=2, noise_std=0.1)
    back = Observations.from_xarray(obs.to_xarray())
    assert np.allclose(back.coords, obs.coords) and back.axes == ("y", "x")
    assert torch.allclose(back.values, obs.values) and back.noise_std == 0.1
    assert back.variables == ("u",)


def test_errors():
    grid = Grid.regular((8, 8))
    with pytest.raises(ValueError, match=r"sensor 1 at \(1.2, 0.4\) lies outside the grid y"):
        Observations([[0.5, 0.5], [1.2, 0.4]]).operator(grid)
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        Observations([[0.5, 0.5]], noise_std=-1)
    with pytest.raises(ValueError, match="exactly one of count= or fraction="):
        Observations.random(grid)
    with pytest.raises(ValueError, match="not among the channels"):
        Observations([[0.5, 0.5]], variables=["p"]).operator(grid, channels=["u"])
