"""forecast training reads windows per batch from lazy data and matches training in memory."""

import dask.array as da
import numpy as np
import pytest
import torch

from sciml_diffusion import forecast
from sciml_diffusion.fields import FieldDataset, Normalizer
from sciml_diffusion.forecast.windows import Windows, fit_statistics, time_tensor
from tests.forecast.conftest import TINY, latlon, waves

pytest.importorskip("zarr")


def lazy_copy(ds, tmp_path, name, chunk=3):
    FieldDataset(ds.chunk(time=chunk)).save(tmp_path / name)
    return FieldDataset.open(tmp_path / name, chunks=chunk)


@pytest.mark.parametrize("make", [waves, latlon])
def test_lazy_windows_equal_windows_in_memory(make, tmp_path):
    data = FieldDataset(make())
    lazy = lazy_copy(make(), tmp_path, "traj.zarr")
    variables = list(data.variables)
    normalizer, sigma = fit_statistics(data, variables)
    lazy_normalizer, lazy_sigma = fit_statistics(lazy, variables)
    np.testing.assert_allclose(lazy_normalizer.mean, normalizer.mean, rtol=1e-10)
    np.testing.assert_allclose(lazy_normalizer.std, normalizer.std, rtol=1e-10)
    assert lazy_sigma == pytest.approx(sigma, rel=1e-6)
    memory = Windows(*time_tensor(data, variables, normalizer), 4)
    read = Windows.of(lazy, variables, normalizer, 4)
    assert len(read) == len(memory)
    rows = torch.tensor([len(memory) - 1, 0, 3, 3])
    for got, want in zip(read.take(rows), memory.take(rows)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert isinstance(lazy.xarray[variables[0]].data, da.Array)


def test_lazy_forecaster_training_matches_in_memory(tmp_path):
    settings = dict(TINY, method="diffusion", val_fraction=0.4)
    memory = forecast.fit(FieldDataset(waves()), None, settings, progress=False)
    lazy = forecast.fit(lazy_copy(waves(), tmp_path, "w.zarr"), None, settings, progress=False)
    assert isinstance(memory.normalizer, Normalizer)
    np.testing.assert_allclose(lazy.normalizer.std, memory.normalizer.std, rtol=1e-10)
    for stage in memory.stages:
        want = memory.networks[stage].state_dict()
        for key, value in lazy.networks[stage].state_dict().items():
            torch.testing.assert_close(value, want[key], rtol=1e-5, atol=1e-6, msg=key)
