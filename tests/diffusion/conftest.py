import pytest
import torch

from sciml_diffusion.fields import FieldDataset, GaussianRandomField, Grid

TINY = dict(
    width=8,
    n_layers=2,
    n_modes=6,
    batch_size=8,
    steps=6,
    warmup=2,
    lr=3e-3,
    checkpoint_every=3,
    val_every=3,
    val_samples=8,
    device="cpu",
)


@pytest.fixture(scope="session")
def field_data():
    """24 samples of two variables on a 1-D periodic 16-point grid."""
    grid = Grid.regular(16, periodic=True)
    field = GaussianRandomField(2.0, 5.0, 3.0)
    gen = torch.Generator().manual_seed(0)
    a = field.sample(grid, 24, gen)
    x = torch.stack([a + 2.0, 0.5 * a.roll(1, -1)], dim=1)
    return FieldDataset.from_tensor(x, variables=["a", "u"], grid=grid)


@pytest.fixture
def tiny():
    return dict(TINY)
