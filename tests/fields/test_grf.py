"""GaussianRandomField against closed-form covariances and its own spectrum."""

import math

import numpy as np
import pytest
import torch

from sciml_diffusion.fields import GaussianRandomField, Grid

BOUNDARIES = ["periodic", "dirichlet", "neumann"]


def grid_for(boundary, shape, length=1.0):
    return Grid.regular(shape, lengths=length, periodic=boundary == "periodic")


def node_covariance(grf, grid):
    """Exact node covariance T diag(s) T^T of the discretised field, (N, N) float64."""
    eye = torch.eye(grid.size, dtype=torch.float64).reshape(grid.size, *grid.shape)
    synth = grf.from_modes(eye, grid).reshape(grid.size, grid.size).T  # columns = modes
    s = grf.spectrum(grid, dtype=torch.float64).reshape(-1)
    return synth @ torch.diag(s) @ synth.T


def green_1d(boundary, x, tau, length):
    """Green's function of (-d^2/dx^2 + tau^2) on [0, L]: the alpha = 1 covariance."""
    lo, hi = np.minimum.outer(x, x), np.maximum.outer(x, x)
    if boundary == "periodic":
        r = np.abs(np.subtract.outer(x, x))
        return np.cosh(tau * (r - length / 2)) / (2 * tau * np.sinh(tau * length / 2))
    if boundary == "dirichlet":
        return np.sinh(tau * lo) * np.sinh(tau * (length - hi)) / (tau * np.sinh(tau * length))
    return np.cosh(tau * lo) * np.cosh(tau * (length - hi)) / (tau * np.sinh(tau * length))


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("n", [9, 16])
def test_node_covariance_is_the_green_function(boundary, n):
    """alpha = 1 in 1-D: the covariance is the Green's function, known in closed form."""
    tau, length = 2.5, 2.0
    grf = GaussianRandomField(alpha=1.0, tau=tau, boundary=boundary, images=20000)
    grid = grid_for(boundary, n, length)
    exact = green_1d(boundary, grid.coords[0], tau, length)
    got = node_covariance(grf, grid).numpy()
    assert np.abs(got - exact).max() < 1e-4 * np.abs(exact).max()


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_transforms_invert_each_other(boundary):
    grid = grid_for(boundary, (6, 10))
    grf = GaussianRandomField(2.0, 3.0, boundary=boundary)
    x = torch.randn(3, *grid.shape, dtype=torch.float64)
    if boundary == "dirichlet":
        x[..., 0, :] = x[..., -1, :] = x[..., :, 0] = x[..., :, -1] = 0
    assert torch.allclose(grf.to_modes(grf.from_modes(x, grid), grid), x, atol=1e-12)
    assert torch.allclose(grf.from_modes(grf.to_modes(x, grid), grid), x, atol=1e-12)


@pytest.mark.parametrize("boundary", ["periodic", "dirichlet"])
def test_orthonormal_transforms(boundary):
    grid = grid_for(boundary, 12)
    grf = GaussianRandomField(1.0, 1.0, boundary=boundary)
    eye = torch.eye(12, dtype=torch.float64)
    t = grf.from_modes(eye, grid)
    interior = slice(1, -1) if boundary == "dirichlet" else slice(None)
    gram = (t @ t.T)[interior, interior]
    assert torch.allclose(gram, torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("shape", [(32,), (12, 10)])
def test_empirical_mode_covariance_matches_spectrum(boundary, shape):
    n = 4000
    grid = grid_for(boundary, shape)
    grf = GaussianRandomField(alpha=2.0, tau=3.0, sigma=2.0, boundary=boundary)
    samples = grf.sample(grid, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    modes = grf.to_modes(samples, grid).reshape(n, -1)
    s = grf.spectrum(grid, dtype=torch.float64).reshape(-1)
    live = s > 0
    var = modes[:, live].var(dim=0)
    ratio = var / s[live]
    assert (ratio - 1).abs().max() < 6 * math.sqrt(2 / n)  # chi-square spread, many modes
    corr = torch.corrcoef(modes[:, live].T)
    off = corr - torch.eye(corr.shape[0], dtype=torch.float64)
    assert off.abs().max() < 6 / math.sqrt(n)
    assert samples.mean(dim=0).abs().max() < 6 * samples.std(dim=0).max() / math.sqrt(n)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_fine_restricted_to_coarse_has_coarse_covariance_exactly(boundary):
    grf = GaussianRandomField(alpha=1.5, tau=2.0, boundary=boundary, images=4000)
    coarse = grid_for(boundary, 9 if boundary != "periodic" else 8)
    fine = grid_for(boundary, 17 if boundary != "periodic" else 16)
    restricted = node_covariance(grf, fine)[::2, ::2]
    assert torch.allclose(restricted, node_covariance(grf, coarse), rtol=1e-4, atol=1e-8)


def test_fine_samples_restricted_match_coarse_spectrum_2d():
    n = 3000
    grf = GaussianRandomField(alpha=2.0, tau=3.0)
    coarse, fine = Grid.regular((8, 8), periodic=True), Grid.regular((32, 32), periodic=True)
    samples = grf.sample(fine, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    modes = grf.to_modes(samples[:, ::4, ::4], coarse).reshape(n, -1)
    ratio = modes.var(dim=0) / grf.spectrum(coarse, dtype=torch.float64).reshape(-1)
    assert (ratio - 1).abs().max() < 6 * math.sqrt(2 / n)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_whitening_inverts_sampling(boundary):
    grid = grid_for(boundary, (10, 14))
    grf = GaussianRandomField(2.0, 4.0, boundary=boundary)
    white = torch.randn(2, *grid.shape, dtype=torch.float64)
    back = grf.apply_inverse_sqrt(grf.apply_sqrt(white, grid), grid)
    live = grf.spectrum(grid, dtype=torch.float64) > 0
    assert torch.allclose(back[:, live], white[:, live], atol=1e-9)
    field = grf.apply_sqrt(white, grid)
    twice = grf.apply_covariance(grf.apply_covariance(field, grid, -1.0), grid, 1.0)
    assert torch.allclose(twice, field, atol=1e-9)


def test_sampling_is_reproducible_and_3d():
    grid = Grid.regular((6, 8, 10), periodic=True)
    grf = GaussianRandomField(2.5, 3.0)
    a = grf.sample(grid, 2, generator=torch.Generator().manual_seed(5))
    b = grf.sample(grid, 2, generator=torch.Generator().manual_seed(5))
    assert a.shape == (2, 6, 8, 10) and torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 1.0, "tau": 3.0}, "alpha=1.0 must exceed d/2=1.0"),
        ({"alpha": 2.0, "tau": 0.0}, "tau must be positive"),
        ({"alpha": 2.0, "tau": 1.0, "sigma": -1.0}, "sigma must be positive"),
        ({"alpha": 2.0, "tau": 1.0, "boundary": "robin"}, "unknown boundary 'robin'"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianRandomField(**kwargs).sample(Grid.regular((8, 8), periodic=True))


def test_shape_mismatch_is_reported():
    grf = GaussianRandomField(2.0, 3.0)
    with pytest.raises(ValueError, match="does not end with the grid shape"):
        grf.apply_sqrt(torch.zeros(4, 5), Grid.regular((8, 8), periodic=True))


@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_mean_zero_removes_the_constant_mode(boundary):
    grid = grid_for(boundary, (9, 12) if boundary == "neumann" else (8, 12))
    grf = GaussianRandomField(2.0, 3.0, boundary=boundary, mean_zero=True)
    x = grf.sample(grid, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert grf.to_modes(x, grid)[:, 0, 0].abs().max() < 1e-12
    if boundary == "periodic":  # the constant mode of the Hartley basis is the node mean
        assert x.mean(dim=(-2, -1)).abs().max() < 1e-12
    full = GaussianRandomField(2.0, 3.0, boundary=boundary).spectrum(grid)
    assert torch.equal(grf.spectrum(grid).flatten()[1:], full.flatten()[1:])


COVARIANCE_CASES = [
    ("periodic",),
    ("dirichlet",),
    ("neumann",),
    ("periodic", "periodic"),
    ("dirichlet", "dirichlet"),
    ("neumann", "neumann"),
    ("periodic", "neumann"),
    ("neumann", "dirichlet"),
    ("dirichlet", "periodic"),
]


def dense(apply, grid):
    """The matrix of a linear map on node values: column j is ``apply(e_j)``."""
    eye = torch.eye(grid.size, dtype=torch.float64).reshape(grid.size, *grid.shape)
    return apply(eye).reshape(grid.size, grid.size).T


@pytest.mark.parametrize("boundary", COVARIANCE_CASES, ids="-".join)
def test_covariance_powers_match_the_sample_covariance(boundary):
    """``C = L L^T`` with ``L`` the sampling map; every power is checked against it."""
    shape = (9, 8)[: len(boundary)] if len(boundary) == 2 else (11,)
    grid = Grid.regular(shape, lengths=1.5, periodic=[b == "periodic" for b in boundary])
    grf = GaussianRandomField(alpha=2.0, tau=3.0, sigma=2.0, boundary=list(boundary))
    sqrt = dense(lambda x: grf.apply_sqrt(x, grid), grid)
    cov = sqrt @ sqrt.T
    live = torch.diag(cov) > 0  # Dirichlet boundary nodes are fixed at 0
    projector = torch.diag(live.double())
    scale = cov.abs().max()

    def power(p):
        return dense(lambda x: grf.apply_covariance(x, grid, p), grid)

    torch.testing.assert_close(power(1.0), cov, atol=1e-12 * scale, rtol=0)
    torch.testing.assert_close(power(2.0), cov @ cov, atol=1e-12 * scale**2, rtol=0)
    inverse = power(-1.0)
    torch.testing.assert_close(inverse, inverse.T, atol=1e-9 * inverse.abs().max(), rtol=0)
    torch.testing.assert_close(cov @ inverse, projector, atol=1e-9, rtol=0)
    torch.testing.assert_close(
        power(-2.0), inverse @ inverse, atol=1e-9 * inverse.max() ** 2, rtol=0
    )
    whiten = dense(lambda x: grf.apply_inverse_sqrt(x, grid), grid)
    torch.testing.assert_close(whiten.T @ whiten, inverse, atol=1e-9 * inverse.abs().max(), rtol=0)
    torch.testing.assert_close(torch.diag(cov).reshape(shape), grf.node_variance(grid))
    assert grf.mean_variance(grid) == pytest.approx(float(torch.diag(cov).mean()), rel=1e-12)
    if "neumann" in boundary:
        with pytest.raises(ValueError, match="integer power"):
            grf.apply_covariance(torch.zeros(shape), grid, 0.5)
    else:
        half = power(0.5)
        torch.testing.assert_close(half, half.T, atol=1e-12 * scale, rtol=0)
        torch.testing.assert_close(half @ half, cov, atol=1e-12 * scale, rtol=0)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_node_variance_does_not_drift_with_resolution(boundary):
    """The alias tail makes node values exact: an interior node's variance is the same on
    every grid, and the periodic mean variance is the continuum one, c(0)."""
    grf = GaussianRandomField(alpha=1.5, tau=20.0, boundary=boundary)
    centres = []
    for n in (16, 64, 128):
        grid = grid_for(boundary, (n + (boundary != "periodic"),) * 2)
        variance = grf.node_variance(grid)
        centres.append(float(variance[n // 2, n // 2]))
        if boundary == "periodic":
            assert grf.mean_variance(grid) == pytest.approx(centres[0], rel=1e-5)
    assert centres == pytest.approx([centres[0]] * 3, rel=1e-5)
    if boundary == "neumann":  # the walls see their mirror image: 2x on edges, 4x in corners
        assert float(variance[0, n // 2]) == pytest.approx(2 * centres[0], rel=1e-4)
        assert float(variance[0, 0]) == pytest.approx(4 * centres[0], rel=1e-4)
