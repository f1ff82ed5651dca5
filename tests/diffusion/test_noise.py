import pytest
import torch

from sciml_diffusion.diffusion import (
    GRFNoise,
    StationaryGRFNoise,
    WhiteNoise,
    as_sigmas,
    edm_sigmas,
    noise_from_dict,
)
from sciml_diffusion.diffusion.noise import randn
from sciml_diffusion.fields import Grid


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("ndim", [1, 2])
def test_grf_noise_unit_variance_and_roundtrips(ndim, periodic):
    grid = Grid.regular((16,) * ndim, periodic=periodic)
    noise = GRFNoise.unit_variance(grid, ndim / 2 + 0.5, 10.0)
    assert noise.variance(grid) == pytest.approx(1.0, rel=1e-6)
    draws = noise.sample((2000, *grid.shape), grid, torch.Generator().manual_seed(0))
    assert draws.var(0).mean().item() == pytest.approx(1.0, abs=0.05)
    white = torch.randn(3, *grid.shape, dtype=torch.float64)
    back = noise.apply_inverse_sqrt(noise.apply_sqrt(white, grid), grid)
    torch.testing.assert_close(back, white)
    x = torch.randn(3, *grid.shape, dtype=torch.float64)
    half = 0.5 if periodic else 1.0  # fractional powers need an orthogonal basis
    twice = noise.apply_covariance(noise.apply_covariance(x, grid, half), grid, half)
    torch.testing.assert_close(twice, noise.apply_covariance(x, grid, 2 * half))
    inverse = noise.apply_covariance(noise.apply_covariance(x, grid, -1.0), grid)
    torch.testing.assert_close(inverse, x)
    rebuilt = noise_from_dict(noise.to_dict())
    assert rebuilt.to_dict() == noise.to_dict()


def test_white_noise_is_identity_covariance():
    grid = Grid.regular(8)
    noise = WhiteNoise()
    x = torch.randn(2, 8)
    assert noise.apply_covariance(x, grid, -1.0) is x
    assert noise_from_dict(noise.to_dict()).to_dict() == {"kind": "white"}
    with pytest.raises(ValueError, match="unknown noise"):
        noise_from_dict({"kind": "pink"})
    with pytest.raises(ValueError, match="noise shape"):
        noise.sample((2, 9), grid)


def test_per_member_generators_give_batch_independent_draws():
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(4)]  # noqa: E731
    full = randn((4, 3), gens())
    torch.testing.assert_close(full[1], torch.randn(3, generator=gens()[1]))
    with pytest.raises(ValueError, match="one per member"):
        randn((3, 3), gens())


@pytest.mark.parametrize("ndim", [1, 2])
def test_grf_noise_consistent_across_resolutions(ndim):
    # node values are exact (alias tail included): a periodic field's node variance is the
    # continuum c(0) on every grid; unit variance on 16 nodes per axis stays unit on 128
    coarse = Grid.regular((16,) * ndim, periodic=True)
    noise = GRFNoise.unit_variance(coarse, ndim / 2 + 0.5, 20.0)
    assert noise.variance(coarse.with_shape(128)) == pytest.approx(1.0, rel=1e-5)


def test_schedules():
    s = edm_sigmas(10, sigma_min=0.002, sigma_max=80.0)
    assert s.shape == (11,) and s[0] == pytest.approx(80) and s[-2] == pytest.approx(0.002)
    assert s[-1] == 0 and torch.all(s[1:] < s[:-1])
    torch.testing.assert_close(as_sigmas([3.0, 2.0, 1.0]), torch.tensor([3.0, 2, 1, 0]).double())
    with pytest.raises(ValueError, match="decreasing"):
        as_sigmas([1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        as_sigmas([1.0, -1.0])
    with pytest.raises(ValueError, match="steps"):
        edm_sigmas(0)


def dense(apply, size, shape):
    eye = torch.eye(size, dtype=torch.float64).reshape(size, *shape)
    return apply(eye).reshape(size, -1).T


@pytest.mark.parametrize("periodic", [(False,), (False, False), (True, False)])
def test_stationary_noise_covariance_and_uniform_variance(periodic):
    shape = (13,) if len(periodic) == 1 else (9, 8)
    grid = Grid.regular(shape, periodic=periodic)
    noise = StationaryGRFNoise.unit_variance(grid, len(shape) / 2 + 0.5, 6.0)
    box = noise.box(grid)
    assert noise.white_shape(grid) == box.shape and box.same_domain(box)
    sqrt = dense(lambda w: noise.apply_sqrt(w, grid), box.size, box.shape)  # (N, N_box)
    cov = sqrt @ sqrt.T
    torch.testing.assert_close(torch.diag(cov), torch.ones(grid.size, dtype=torch.float64))
    # stationary: the covariance depends on the separation only (compare shifted pairs)
    c = cov.reshape(*shape, *shape)
    if len(shape) == 1:
        torch.testing.assert_close(c[0, 3], c[5, 8])
    else:
        torch.testing.assert_close(c[0, 0, 2, 1], c[4, 3, 6, 4])
    apply = lambda p: dense(lambda x: noise.apply_covariance(x, grid, p), grid.size, shape)  # noqa: E731
    torch.testing.assert_close(apply(1.0), cov)
    torch.testing.assert_close(
        cov @ apply(-1.0), torch.eye(grid.size, dtype=torch.float64), atol=1e-7, rtol=0
    )
    whiten = dense(lambda x: noise.apply_inverse_sqrt(x, grid), grid.size, shape)
    torch.testing.assert_close(
        sqrt @ whiten, torch.eye(grid.size, dtype=torch.float64), atol=1e-7, rtol=0
    )
    draws = noise.sample((3000, *shape), grid, torch.Generator().manual_seed(0))
    assert draws.shape == (3000, *shape)
    assert (draws.var(0) - 1).abs().max() < 6 * (2 / 3000) ** 0.5
    assert noise_from_dict(noise.to_dict()).to_dict() == noise.to_dict()
    with pytest.raises(ValueError, match="integer power"):
        noise.apply_covariance(torch.zeros(shape), grid, 0.5)


def test_stationary_noise_is_the_same_process_on_every_grid():
    coarse = Grid.regular((9, 9))
    noise = StationaryGRFNoise.unit_variance(coarse, 1.5, 20.0)
    for n in (17, 65):
        assert noise.variance(coarse.with_shape(n)) == pytest.approx(1.0, rel=1e-5)
    fine = coarse.with_shape(17)
    sqrt = dense(lambda w: noise.apply_sqrt(w, fine), noise.box(fine).size, noise.box(fine).shape)
    restricted = (sqrt @ sqrt.T).reshape(17, 17, 17, 17)[::2, ::2, ::2, ::2].reshape(81, 81)
    coarse_sqrt = dense(
        lambda w: noise.apply_sqrt(w, coarse), noise.box(coarse).size, noise.box(coarse).shape
    )
    torch.testing.assert_close(restricted, coarse_sqrt @ coarse_sqrt.T, atol=1e-4, rtol=1e-4)
