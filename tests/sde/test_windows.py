"""Bring-your-own series: calendar times, windows, and ``sde import`` on CSV and NetCDF."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sciml_diffusion.cli import main
from sciml_diffusion.fields.io import open_dataset
from sciml_diffusion.sde.series import series_from_dataset
from sciml_diffusion.sde.windows import calendar_to_number, cut_windows


@pytest.mark.parametrize(
    "unit, expected",
    [
        ("months", [0.0, 1.0, 12.0, 13.0 + 14 / 28]),  # 15 Feb 1951: half of 28 days
        ("days", [0.0, 31.0, 365.0, 365.0 + 31 + 14]),
        ("years", [0.0, 31 / 365, 1.0, 1.0 + 45 / 365]),
    ],
)
def test_calendar_times_in_each_unit(unit, expected):
    dates = ["1950-01-01", "1950-02-01", "1951-01-01", "1951-02-15"]
    t, units = calendar_to_number(dates, unit)
    np.testing.assert_allclose(t, expected)
    assert units == f"{unit} since 1950-01-01"


def test_calendar_times_on_a_noleap_calendar():
    import cftime

    dates = np.array([cftime.DatetimeNoLeap(2000, m, 1) for m in (1, 2, 3)])
    np.testing.assert_allclose(calendar_to_number(dates, "days")[0], [0, 31, 59])
    np.testing.assert_allclose(calendar_to_number(dates, "months")[0], [0, 1, 2])


def test_windows_keep_their_absolute_times():
    series = cut_windows(np.arange(10.0), np.arange(10.0)[:, None], window=4, stride=3)
    assert series.times.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert series.values[2, :, 0].tolist() == [6, 7, 8, 9]
    with pytest.raises(ValueError, match="fewer than one window"):
        cut_windows(np.arange(3.0), np.zeros(3), window=4)


def monthly(n=30):
    dates = pd.date_range("1990-01-01", periods=n, freq="MS")
    a = np.sin(2 * np.pi * np.arange(n) / 12)
    b = np.arange(n, dtype=float)
    b[5] = np.nan
    return dates, a, b


@pytest.mark.parametrize("layout", ["wide", "long", "netcdf"])
def test_import_layouts_give_the_same_windows(tmp_path, layout):
    dates, a, b = monthly()
    if layout == "wide":
        path = tmp_path / "s.csv"
        pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "a": a, "b": b}).to_csv(
            path, index=False
        )
        extra = []
    elif layout == "long":
        path = tmp_path / "s.csv"
        rows = [(d, "a", x) for d, x in zip(dates.strftime("%Y-%m-%d"), a)]
        rows += [(d, "b", x) for d, x in zip(dates.strftime("%Y-%m-%d"), b) if np.isfinite(x)]
        frame = pd.DataFrame(rows[::-1], columns=["date", "name", "value"])  # unsorted
        frame.to_csv(path, index=False)
        extra = ["--long", "name", "value"]
    else:
        path = tmp_path / "s.nc"
        ds = xr.Dataset({"a": ("date", a), "b": ("date", b)}, coords={"date": dates})
        ds.to_netcdf(path, engine="h5netcdf")
        extra = []
    out = tmp_path / "w.nc"
    args = ["sde", "import", str(path), "--time", "date", "--variables", "a", "b"]
    args += ["--time-unit", "months", "--window", "12", "--stride", "6", "--out", str(out)]
    assert main(args + extra) == 0
    ds = open_dataset(out)
    series = series_from_dataset(ds)
    assert series.values.shape == (4, 12, 2)  # windows starting at months 0, 6, 12, 18
    np.testing.assert_allclose(series.times[1].numpy(), np.arange(6, 18))
    assert not bool(series.mask[0, 5, 1]) and bool(series.mask[0, 5, 0])
    np.testing.assert_allclose(series.values[3, :, 0].numpy(), a[18:30], atol=1e-6)
    assert ds.attrs["time_units"] == "months since 1990-01-01"
    assert main(args + extra) == 2  # never overwrites without --overwrite


def test_import_whole_record_with_a_time_range(tmp_path, capsys):
    dates, a, _ = monthly()
    path = tmp_path / "s.csv"
    pd.DataFrame({"t": dates.strftime("%Y-%m-%d"), "a": a}).to_csv(path, index=False)
    out = tmp_path / "r.nc"
    args = ["sde", "import", str(path), "--time", "t", "--time-unit", "months"]
    assert main(args + ["--start", "1990-07-01", "--window", "0", "--out", str(out)]) == 0
    ds = open_dataset(out)
    assert ds["state"].dims == ("time", "channel")
    np.testing.assert_allclose(ds["time"].values, np.arange(6, 30))
    assert series_from_dataset(ds).values.shape == (1, 24, 1)
    assert main(args + ["--time", "nope", "--window", "0", "--out", str(tmp_path / "x.nc")]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
