"""Coordinates kept intact: decreasing axes reversed and restored; valid times in the data's
own calendar."""

import cftime
import numpy as np
import pytest
import xarray as xr

from sciml_diffusion.forecast.layout import ascending, restore, time_step, valid_times


@pytest.mark.parametrize(
    "times, leads, expected",
    [
        (np.array([0.0, 0.5, 1.0]), [1, 4], [1.5, 3.0]),
        (
            np.array(["2001-01-01T00", "2001-01-01T06"], dtype="datetime64[ns]"),
            [1, 4],
            np.array(["2001-01-01T12", "2001-01-02T06"], dtype="datetime64[ns]"),
        ),
        (
            np.array([cftime.Datetime360Day(2001, 2, 29), cftime.Datetime360Day(2001, 2, 30)]),
            [1, 2],
            [cftime.Datetime360Day(2001, 3, 1), cftime.Datetime360Day(2001, 3, 2)],
        ),
    ],
)
def test_valid_times_follow_the_data_calendar(times, leads, expected):
    out = valid_times(times[-1], leads, time_step(times))
    assert list(out) == list(expected)


def test_decreasing_axes_are_reversed_and_restored():
    ds = xr.Dataset(
        {"t": (("lat", "lon"), np.arange(6.0).reshape(3, 2))},
        coords={"lat": [30.0, 0.0, -30.0], "lon": [0.0, 180.0]},
    )
    up, flipped = ascending(ds)
    assert flipped == ("lat",) and list(up["lat"].values) == [-30.0, 0.0, 30.0]
    assert up["lat"].values.flags["C_CONTIGUOUS"]
    xr.testing.assert_identical(restore(up, flipped), ds)
