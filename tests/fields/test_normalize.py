"""Normalizer statistics, inversion and JSON round trip."""

import numpy as np
import pytest
import torch

from sciml_diffusion.fields import FieldDataset, Grid, Normalizer


def dataset():
    grid = Grid.regular((5, 6))
    x = torch.stack([3 + 2 * torch.randn(40, 5, 6), -1 + 0.1 * torch.randn(40, 5, 6)], 1)
    x[:, 0, 0, :] = float("nan")
    return FieldDataset.from_tensor(x, ["a", "u"], grid=grid)


def test_fit_ignores_nan_and_inverts(tmp_path):
    ds = dataset()
    norm = Normalizer.fit(ds)
    a = ds.xarray["a"].values
    assert norm.mean[0] == pytest.approx(np.nanmean(a)) and norm.std[0] == pytest.approx(
        np.nanstd(a)
    )
    x = ds.to_tensor()
    assert torch.allclose(norm.denormalize(norm.normalize(x)), x, atol=1e-5)
    time_batch = x[:, None].repeat(1, 3, 1, 1, 1)  # (B, T, C, y, x)
    assert norm.normalize(time_batch).shape == time_batch.shape
    xr_norm = norm.normalize(ds)
    assert float(np.nanmean(xr_norm.xarray["u"].values)) == pytest.approx(0, abs=1e-5)
    norm.save(tmp_path / "n.json")
    assert Normalizer.load(tmp_path / "n.json").to_dict() == norm.to_dict()


def test_errors(tmp_path):
    norm = Normalizer.fit(dataset(), variables=["u"])
    with pytest.raises(ValueError, match="no channel dim of size 1"):
        norm.normalize(torch.zeros(2, 2, 5, 6))
    with pytest.raises(ValueError, match="std must be positive"):
        Normalizer(["a"], [0.0], [0.0], 2)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a normalizer JSON"):
        Normalizer.load(tmp_path / "bad.json")
