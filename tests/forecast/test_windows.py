"""Windows of context + horizon frames: never across the train/validation split, clear
errors for data that cannot make one."""

import numpy as np
import pytest
import torch

from sciml_diffusion.fields import FieldDataset
from sciml_diffusion.forecast.windows import Windows, check_time_data, split_time, time_tensor
from tests.forecast.conftest import waves


def _windows(dataset, length):
    from sciml_diffusion.fields import Normalizer

    return Windows(*time_tensor(dataset, ["u"], Normalizer.fit(dataset)), length)


@pytest.mark.parametrize("by", ["time", "sample"])
@pytest.mark.parametrize("length", [2, 5])
def test_windows_never_cross_the_split(by, length):
    ds = waves(samples=4, steps=20)
    index = np.arange(20)[None, :, None, None] + 1000 * np.arange(4)[:, None, None, None]
    ds["u"] = (ds["u"].dims, np.broadcast_to(index, ds["u"].shape).astype(np.float32))
    train, val = split_time(FieldDataset(ds), 0.25, by=by)
    seen = []
    for part in (train, val):
        x = part.to_tensor(["u"])
        windows = Windows(x, torch.ones_like(x, dtype=torch.bool), length)
        frames, _ = windows.take(torch.arange(len(windows)))
        codes = frames[:, :, 0, 0, 0].long()  # 1000 * trajectory + time index
        assert torch.all(codes[:, 1:] - codes[:, :-1] == 1)  # one trajectory, consecutive
        part_codes = set(part.xarray["u"].isel(y=0, x=0).values.astype(int).ravel().tolist())
        assert set(codes.unique().tolist()) <= part_codes
        seen.append(part_codes)
    assert not seen[0] & seen[1]  # the split shares no frame, so no window spans both
    if by == "time":
        assert max(c % 1000 for c in seen[0]) < min(c % 1000 for c in seen[1])


def test_window_time_indices_are_consecutive_and_inside_the_trajectory():
    data = FieldDataset(waves(samples=2, steps=7))
    w = _windows(data, 3)
    idx = w.time_indices(torch.arange(len(w)))
    assert len(w) == 2 * 5
    assert torch.all(idx[:, 1:] - idx[:, :-1] == 1) and int(idx.max()) == 6


def test_data_without_time_or_too_short_are_refused():
    ds = waves(samples=2, steps=4)
    with pytest.raises(ValueError, match="no 'time' dim"):
        check_time_data(FieldDataset(ds.isel(time=0)), 3)
    with pytest.raises(ValueError, match="4 time steps.*at least 6"):
        check_time_data(FieldDataset(ds), 6)
    with pytest.raises(ValueError, match="val_fraction"):
        split_time(FieldDataset(ds), 1.5)
