"""Prior training from lazy (dask) data read per batch equals training on the data in memory."""

import json

import dask.array as da
import pytest
import torch

from sciml_diffusion.diffusion import train_prior
from sciml_diffusion.fields import FieldDataset
from tests.fields.test_lazy import field_set

pytest.importorskip("zarr")


@pytest.fixture
def stored(tmp_path):
    """Fields with NaN land, in memory and as a Zarr store with one chunk per sample."""
    data = field_set(n=16)
    path = tmp_path / "fields.zarr"
    FieldDataset(data.xarray.chunk(sample=1)).save(path)
    return data, path


def test_lazy_training_reaches_the_in_memory_weights(stored, tiny, tmp_path):
    data, path = stored
    lazy = FieldDataset.open(path, chunks=2)
    settings = {**tiny, "steps": 2, "batch_size": 4, "val_every": 1, "subsample": [1]}
    train_prior(data, settings, out=tmp_path / "memory", progress=False)
    train_prior(lazy, settings, out=tmp_path / "lazy", progress=False)
    assert isinstance(lazy.xarray["a"].data, da.Array)  # never loaded into the data set
    read = {
        k: json.loads((tmp_path / k / "normalizer.json").read_text()) for k in ("memory", "lazy")
    }
    for key in ("mean", "std"):
        torch.testing.assert_close(
            torch.tensor(read["lazy"][key]), torch.tensor(read["memory"][key])
        )
    configs = [json.loads((tmp_path / k / "config.json").read_text()) for k in ("memory", "lazy")]
    assert configs[0]["sigma_data"] == pytest.approx(configs[1]["sigma_data"], rel=1e-12)
    logs = [(tmp_path / k / "log.jsonl").read_text() for k in ("memory", "lazy")]
    assert logs[0] == logs[1]  # same losses and validation losses, step by step
    weights = [
        torch.load(tmp_path / k / "checkpoint.pt", weights_only=True) for k in ("memory", "lazy")
    ]
    for name in ("model", "ema"):
        for key, value in weights[0][name].items():
            torch.testing.assert_close(weights[1][name][key], value, msg=f"{name}.{key}")


def test_lazy_training_checks_dirichlet_values_by_streaming(stored, tiny):
    _, path = stored
    lazy = FieldDataset.open(path, chunks=2)
    with pytest.raises(ValueError, match="declared dirichlet"):
        train_prior(lazy, {**tiny, "steps": 1, "dirichlet": {"a": 0.0}}, progress=False)


def test_lazy_training_refuses_in_memory_resampling(stored, tiny):
    _, path = stored
    lazy = FieldDataset.open(path, chunks=2)
    with pytest.raises(ValueError, match="resample the file first"):
        train_prior(lazy, {**tiny, "steps": 1, "resolution": 4}, progress=False)
