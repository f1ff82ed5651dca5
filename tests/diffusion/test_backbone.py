import pytest
import torch

from sciml_diffusion.diffusion import EDMDenoiser, edm_coefficients
from sciml_diffusion.diffusion.backbone import ConditionalFNO
from sciml_diffusion.fields import Grid


def _model(ndim, cond_channels=0):
    torch.manual_seed(0)
    return ConditionalFNO(2, (4,) * ndim, width=8, n_layers=2, cond_channels=cond_channels)


@pytest.mark.parametrize("cond_channels", [0, 1])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_forward_backward_and_every_parameter_used(ndim, cond_channels):
    model = _model(ndim, cond_channels)
    size = (10,) * ndim
    x = torch.randn(3, 2, *size)
    cond = torch.randn(3, 1, *size) if cond_channels else None
    out = model(x, torch.randn(3), cond=cond)
    assert out.shape == x.shape
    out.square().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused


@pytest.mark.parametrize("ndim", [1, 2])
def test_same_weights_on_grids_of_different_sizes(ndim):
    model = _model(ndim)
    for n in (8, 16, 24):
        grid = Grid.regular((n,) * ndim)
        assert (
            model(torch.randn(2, 2, *grid.shape), torch.zeros(2), grid=grid).shape[2:]
            == grid.shape
        )


def test_film_conditions_each_sample_on_its_own_noise_level():
    model = _model(2).eval()
    x = torch.randn(1, 2, 12, 12).expand(3, -1, -1, -1)
    levels = torch.tensor([-1.0, 0.0, 1.0])
    out = model(x, levels)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    alone = model(x[1:2], levels[1:2])  # a sample's output does not depend on its batch
    torch.testing.assert_close(out[1:2], alone, rtol=1e-5, atol=1e-6)


def test_backbone_rejects_wrong_inputs():
    model = _model(2, cond_channels=1)
    with pytest.raises(ValueError, match="expected a field"):
        model(torch.randn(2, 3, 8, 8), torch.zeros(2), cond=torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="cond channels"):
        model(torch.randn(2, 2, 8, 8), torch.zeros(2))
    with pytest.raises(ValueError, match="grid"):
        model(torch.randn(2, 2, 8, 8), torch.zeros(2), torch.randn(2, 1, 8, 8), Grid.regular(8))


def test_bf16_autocast_runs():
    model = _model(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = EDMDenoiser(model)(torch.randn(2, 2, 8, 8), torch.tensor([0.5, 2.0]))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_edm_preconditioning():
    sigma, sd = torch.tensor([0.1, 1.0, 10.0]), 0.7
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, sd)
    # unit-variance network input and effective target for data of std sd and unit noise
    torch.testing.assert_close(c_in**2 * (sd**2 + sigma**2), torch.ones(3))
    target_var = (sd**2 * (1 - c_skip) ** 2 + c_skip**2 * sigma**2) / c_out**2
    torch.testing.assert_close(target_var, torch.ones(3))
    torch.testing.assert_close(c_noise, sigma.log() / 4)

    class Zero(torch.nn.Module):
        def forward(self, x, c_noise, cond=None, grid=None):
            return torch.zeros_like(x)

    x = torch.randn(3, 1, 8)
    torch.testing.assert_close(EDMDenoiser(Zero(), sd)(x, sigma), c_skip[:, None, None] * x)
    with pytest.raises(ValueError, match="sigma_data"):
        EDMDenoiser(Zero(), 0.0)
