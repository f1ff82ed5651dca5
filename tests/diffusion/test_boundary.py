import pytest
import torch

from sciml_diffusion.diffusion import EDMDenoiser, Prior, train_prior
from sciml_diffusion.diffusion.backbone import ConditionalFNO
from sciml_diffusion.diffusion.boundary import boundary_mask, pin_boundary
from sciml_diffusion.fields import FieldDataset, GaussianRandomField, Grid


def test_boundary_mask_marks_the_ends_of_bounded_axes_only():
    mask = boundary_mask((4, 5), periodic=(True, False))
    expected = torch.zeros(4, 5, dtype=torch.bool)
    expected[:, [0, -1]] = True
    assert torch.equal(mask, expected)
    assert boundary_mask((3, 3), (False, False)).sum() == 8


@pytest.mark.parametrize("periodic", [(False,), (False, False), (True, False)])
def test_denoiser_output_is_pinned_on_the_boundary(periodic):
    grid = Grid.regular((9,) * len(periodic), periodic=periodic)
    backbone = ConditionalFNO(2, (4,) * len(periodic), width=8, n_layers=1)
    torch.manual_seed(0)
    free = EDMDenoiser(backbone, sigma_data=1.0)
    pinned = EDMDenoiser(backbone, sigma_data=1.0, pinned=[(1, -0.7)])
    x = torch.randn(3, 2, *grid.shape)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    d_free, d_pin = free(x, sigma, grid=grid), pinned(x, sigma, grid=grid)
    edge = boundary_mask(grid.shape, grid.periodic)
    assert torch.all(d_pin[:, 1][:, edge] == -0.7)
    torch.testing.assert_close(d_pin[:, 1][:, ~edge], d_free[:, 1][:, ~edge])
    torch.testing.assert_close(d_pin[:, 0], d_free[:, 0])
    torch.testing.assert_close(pin_boundary(d_free, [(1, -0.7)], grid.periodic), d_pin)


@pytest.fixture
def dirichlet_data():
    grid = Grid.regular(17)
    gen = torch.Generator().manual_seed(0)
    a = GaussianRandomField(1.5, 5.0, boundary="neumann").sample(grid, 24, gen) + 2.0
    u = GaussianRandomField(1.5, 5.0, boundary="dirichlet").sample(grid, 24, gen) + 0.3
    return FieldDataset.from_tensor(torch.stack([a, u], 1), variables=["a", "u"], grid=grid)


def test_dirichlet_variable_is_held_by_samples(dirichlet_data, tiny, tmp_path):
    tiny.update(dirichlet={"u": 0.3})
    train_prior(dirichlet_data, tiny, out=tmp_path / "run", progress=False)
    prior = Prior.load(tmp_path / "run")
    for grid in (prior.grid, prior.grid.with_shape(33)):
        x = prior.sample(4, grid=grid, steps=4, generator=0).to_tensor(["a", "u"])
        torch.testing.assert_close(x[:, 1, [0, -1]], torch.full((4, 2), 0.3))
        assert not torch.allclose(x[:, 0, [0, -1]], torch.full((4, 2), 0.3))


def test_dirichlet_declaration_is_checked_against_the_data(dirichlet_data, tiny):
    with pytest.raises(ValueError, match="declared dirichlet with value 0.0"):
        train_prior(dirichlet_data, {**tiny, "dirichlet": {"u": 0.0}}, progress=False)
    with pytest.raises(ValueError, match="not trained"):
        train_prior(dirichlet_data, {**tiny, "dirichlet": {"p": 0.0}}, progress=False)
