"""Known covariates of time: calendar phase and tabulated series."""

import math

import pytest
import torch

from sciml_diffusion.sde.covariates import SeasonalCovariates, TabulatedCovariates
from sciml_diffusion.sde.latent import LatentSDE


def test_seasonal_features_are_periodic_and_bounded():
    c = SeasonalCovariates(12.0, harmonics=3)
    t = torch.tensor([0.0, 3.0, 15.0, 723.0])
    f = c(t)
    assert f.shape == (4, 6) and f.abs().max() <= 1
    torch.testing.assert_close(f[1], f[2], atol=1e-5, rtol=0)
    torch.testing.assert_close(f[1], f[3], atol=1e-4, rtol=0)
    assert f[1, 0] == pytest.approx(math.sin(math.pi / 2))


def test_tabulated_covariates_interpolate_linearly_and_hold_the_ends():
    c = TabulatedCovariates([0.0, 1.0, 3.0], [[0.0, 1.0], [2.0, 1.0], [6.0, 0.0]])
    out = c(torch.tensor([-1.0, 0.5, 2.0, 9.0]))
    torch.testing.assert_close(out, torch.tensor([[0, 1], [1, 1], [4, 0.5], [6, 0.0]]))
    with pytest.raises(ValueError, match="increasing"):
        TabulatedCovariates([0.0, 0.0], [1.0, 2.0])


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"autonomous": False},
        {"period": 12.0},
        {"covariate_series": {"times": [0, 50], "values": [[0], [1]]}},
    ],
)
def test_the_prior_drift_sees_time_only_through_its_covariates(options):
    torch.manual_seed(0)
    model = LatentSDE(1, 2, hidden=8, context_dim=4, **options)
    z = torch.randn(3, 2)
    a = model.prior_drift(torch.tensor(1.0), z)
    b = model.prior_drift(torch.tensor(13.0), z)
    if not options:
        torch.testing.assert_close(a, b)
    elif "period" in options:
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)  # one period later
        assert not torch.allclose(a, model.prior_drift(torch.tensor(7.0), z))
    else:
        assert not torch.allclose(a, b)
    reloaded = LatentSDE.from_config(model.config)
    reloaded.load_state_dict(model.state_dict())
    torch.testing.assert_close(
        reloaded.prior_drift(torch.tensor(5.0), z), model.prior_drift(torch.tensor(5.0), z)
    )
