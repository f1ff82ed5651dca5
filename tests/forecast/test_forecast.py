"""The one interface: fit on trajectories, forecast an ensemble as xarray; NaN land never
reaches a loss; bad input fails with errors that say what to do."""

import numpy as np
import pytest
import torch
import xarray as xr

from sciml_diffusion import forecast
from sciml_diffusion.fields import FieldDataset
from sciml_diffusion.forecast.windows import Windows, time_tensor
from tests.forecast.conftest import METHODS, TINY, latlon, waves


@pytest.fixture(scope="module")
def trained():
    data = FieldDataset(waves())
    return {m: forecast.fit(data, None, dict(TINY, method=m), progress=False) for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_forecast_layout_rollout_and_reproducibility(trained, method):
    model = trained[method]
    initial = waves(samples=2, steps=4, seed=3)
    ens = model.forecast(initial, [1, 2, 5], members=3, generator=7)
    u = ens["u"]
    assert u.dims == ("sample", "member", "lead_time", "y", "x")
    assert u.shape == (2, 3, 3, 8, 8)
    assert np.isfinite(u.values).all()
    assert list(ens["lead_time"].values) == [1, 2, 5]  # 5 > horizon 2: rolled out
    assert np.allclose(ens["valid_time"].values, 0.3 + 0.1 * np.array([1, 2, 5]))
    assert float(ens["init_time"]) == pytest.approx(0.3)
    np.testing.assert_array_equal(ens["x"].values, initial["x"].values)
    again = model.forecast(initial, [1, 2, 5], members=3, generator=7)
    xr.testing.assert_identical(ens, again)
    # members differ, and member i does not depend on the ensemble size
    assert float(u.std("member").mean()) > 0
    if method != "dyffusion":  # DYffusion's randomness is MC dropout (one global stream)
        small = model.forecast(initial, [1, 2, 5], members=2, generator=7)
        np.testing.assert_allclose(small["u"].values, u.values[:, :2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_nan_land_never_reaches_a_loss(trained, method):
    model = trained[method]
    ds = waves(samples=2, steps=6)
    ds["u"][:, :, 2:4, 1:5] = np.nan
    data = FieldDataset(ds)
    windows = Windows(*time_tensor(data, ["u"], model.normalizer), TINY["context"] + 2)
    x, mask = windows.take(torch.arange(len(windows)))
    assert not mask.all()
    for stage in model.stages:
        loss_fn = model.stage_loss(stage)
        net = model.networks[stage]
        values = []
        for fill in (0.0, 1e6):  # whatever sits under the mask, the loss is the same
            filled = torch.where(mask, x, torch.full_like(x, fill))
            torch.manual_seed(0)
            values.append(loss_fn(net, filled, mask, torch.Generator().manual_seed(1)).value())
        assert torch.isfinite(values[0])
        assert torch.allclose(values[0], values[1]), stage


@pytest.mark.parametrize("method", METHODS)
def test_fit_resume_and_load(tmp_path, method):
    data = FieldDataset(waves())
    # the interpolator of DYffusion is finished in the first run: a resumed forecaster
    # stage then continues on the same interpolator as an uninterrupted run
    config = dict(TINY, method=method, steps=4, interpolator_steps=4)
    out = tmp_path / "run"
    forecast.fit(data, None, dict(config, steps=2), out=out, progress=False)
    with pytest.raises(FileExistsError, match="already holds"):
        forecast.fit(data, None, config, out=out, progress=False)
    with pytest.raises(ValueError, match="width"):
        forecast.fit(data, None, dict(config, width=16), out=out, resume=True, progress=False)
    resumed = forecast.fit(data, None, config, out=out, resume=True, progress=False)
    straight = forecast.fit(data, None, config, out=tmp_path / "straight", progress=False)
    for stage in resumed.stages:
        for a, b in zip(
            resumed.networks[stage].parameters(), straight.networks[stage].parameters()
        ):
            assert torch.allclose(a, b, atol=1e-6)
    loaded = forecast.load(out)
    a = loaded.forecast(waves(steps=3), [1, 3], members=2, generator=0)
    b = resumed.forecast(waves(steps=3), [1, 3], members=2, generator=0)
    xr.testing.assert_allclose(a, b)


def test_bad_input_errors(trained):
    model = trained["diffusion"]
    with pytest.raises(ValueError, match="no 'time' dim"):
        forecast.fit(waves().isel(time=0), None, TINY, progress=False)
    with pytest.raises(ValueError, match="at least 4"):
        forecast.fit(waves(steps=3), None, TINY, progress=False)
    with pytest.raises(ValueError, match="beyond the horizon 2"):
        model.forecast(waves(steps=3), [1, 3], members=2, rollout=False)
    with pytest.raises(ValueError, match="1 time steps.*at least 2"):
        model.forecast(waves(steps=1), [1], members=2)
    finer = waves(steps=3, shape=(16, 16))
    with pytest.raises(ValueError, match="differs from the training grid.*refusing"):
        model.forecast(finer, [1], members=2)
    with pytest.raises(ValueError, match="lead times must be integers >= 1"):
        model.forecast(waves(steps=3), [0, 1], members=2)
    with pytest.raises(ValueError, match="sampler 'dpm2m' is not available for rolling"):
        forecast.fit(waves(), None, dict(TINY, method="rolling", sampler="dpm2m"))
    with pytest.raises(ValueError, match="unknown method"):
        forecast.fit(waves(), None, dict(TINY, method="ddpm"), progress=False)


@pytest.mark.parametrize("method", ["dyffusion", "rolling"])
def test_lat_lon_with_nan_land_keeps_the_input_coordinates(method):
    ds = latlon(steps=10)
    model = forecast.fit(ds, None, dict(TINY, method=method), progress=False)
    ens = model.forecast(ds.isel(time=slice(-2, None)), [1, 3], members=2, generator=0)
    np.testing.assert_array_equal(ens["lat"].values, ds["lat"].values)  # still north->south
    np.testing.assert_array_equal(ens["lon"].values, ds["lon"].values)
    land = np.isnan(ds["sst"].isel(time=-1).values)
    sst = ens["sst"].values
    assert np.isnan(sst[..., land]).all() and np.isfinite(sst[..., ~land]).all()
    assert ens["sst"].attrs["units"] == "degC"
    assert ens["valid_time"].values[0].calendar == "noleap"
    assert str(ens["valid_time"].values[1]) == "2001-03-09 00:00:00"


def test_references_persistence_and_climatology():
    data = waves(steps=6)
    initial = data.isel(time=slice(0, 2))
    p = forecast.persistence(initial, [1, 2])
    assert p["u"].dims == ("sample", "member", "lead_time", "y", "x")
    np.testing.assert_array_equal(p["u"].isel(member=0, lead_time=1), initial["u"].isel(time=-1))
    c = forecast.climatology(data, initial, [1, 2], members=5, seed=0)
    assert c.sizes["member"] == 5
    pool = data["u"].values.reshape(-1, 8, 8)
    member = c["u"].isel(sample=0, member=0, lead_time=0).values
    assert any(np.array_equal(member, frame) for frame in pool)


def test_dyffusion_reuses_an_interpolator_by_path(tmp_path):
    data = FieldDataset(waves())
    first = tmp_path / "first"
    trained = forecast.fit(data, None, dict(TINY, method="dyffusion"), out=first, progress=False)
    config = dict(TINY, method="dyffusion", interpolator=str(first), seed=5)
    second = forecast.fit(data, None, config, out=tmp_path / "second", progress=False)
    for a, b in zip(
        trained.networks["interpolator"].parameters(), second.networks["interpolator"].parameters()
    ):
        assert torch.equal(a, b)
    assert not (tmp_path / "second" / "interpolator" / "log.jsonl").exists()  # not retrained
    loaded = forecast.load(tmp_path / "second")  # the copy makes the run self-contained
    assert torch.equal(
        next(loaded.networks["interpolator"].parameters()),
        next(trained.networks["interpolator"].parameters()),
    )
    with pytest.raises(ValueError, match="does not fit"):
        forecast.fit(data, None, dict(config, width=12), progress=False)


@pytest.mark.parametrize("method", ["diffusion", "rolling"])
def test_function_space_noise(method):
    config = dict(TINY, method=method, noise="grf", sampler="euler")
    model = forecast.fit(FieldDataset(waves()), None, config, progress=False)
    ens = model.forecast(waves(steps=3), [1, 3], members=2, generator=0)
    assert np.isfinite(ens["u"].values).all()
