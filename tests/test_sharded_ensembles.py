"""Ensembles sharded by member: the file written on 2 processes is the 1-process file.

Member ``i`` draws from generators seeded by (seed, ``i``), so which batch or rank computes
it does not change its draws. With the same batches (``--batch-size 1``) the 2-process file
equals the 1-process one bit for bit; with other batches (a batch of 2 against one of 5)
only float32 rounding in batched kernels differs, hence the tolerances ``TOL`` (samplers)
and ``TOL_MMPS`` (MMPS's Krylov solve amplifies that rounding) for those comparisons.

The 2-process runs use ``torchrun --standalone --nproc_per_node=2`` (gloo) through
:func:`tests.torchrun.torchrun`, with exactly the commands of ``docs/scaling_ensembles.md``.
The 1-process tests split the members as two ranks would (:func:`two_rank_blocks`, a
context of rank ``r`` of 2 without a process group, so nothing is gathered) and as
batches, and compare with the whole ensemble.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from sciml_diffusion import distributed
from sciml_diffusion.cli import main
from sciml_diffusion.fields import FieldDataset, GaussianRandomField, Grid
from sciml_diffusion.fields.io import open_dataset
from tests.torchrun import torchrun

#: float32 rounding of batched kernels (observed differences ~1e-6 on fields of size ~1-5)
TOL = dict(rtol=1e-5, atol=1e-5)
#: the same through MMPS's GMRES solves (observed ~2e-5 on fields of size ~6)
TOL_MMPS = dict(rtol=1e-4, atol=1e-4)

#: the tiny prior of the command-line tests
TINY_PRIOR = ["--steps", "2", "--batch-size", "2", "--width", "4", "--modes", "2", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 12x12 two-variable data set, a tiny prior trained on it and 10 sensors of u."""
    root = tmp_path_factory.mktemp("sharded")
    grid = Grid.regular((12, 12))
    fields = GaussianRandomField(2.0, 3.0, boundary="neumann").sample(
        grid, 8, torch.Generator().manual_seed(0)
    )
    x = torch.stack([fields, 2 * fields + 1], dim=1)
    FieldDataset.from_tensor(x, variables=["a", "u"], grid=grid).save(root / "data.nc")
    argv = ["prior", "train", "--data", str(root / "data.nc"), "--out", str(root / "prior")]
    assert main([*argv, *TINY_PRIOR, "--noise", "white"]) == 0
    argv = ["observe", "--data", str(root / "data.nc"), "--count", "10", "--variables", "u"]
    assert main([*argv, "--noise-std", "0.01", "--out", str(root / "obs.nc")]) == 0
    return root


def _cli(*argv):
    return ["-m", "sciml_diffusion.cli", *argv]


def test_prior_sample_on_two_ranks_writes_the_one_process_file(files, tmp_path):
    common = ["prior", "sample", "--checkpoint", str(files / "prior"), "--samples", "5"]
    common += ["--steps", "3", "--seed", "3", "--batch-size", "1", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "one.nc")]) == 0
    stdout = torchrun(_cli(*common, "--out", str(tmp_path / "two.nc")))
    assert stdout.count("wrote 5 samples") == 1  # rank 0 alone writes and prints
    one, two = open_dataset(tmp_path / "one.nc"), open_dataset(tmp_path / "two.nc")
    xr.testing.assert_equal(one, two)  # bit for bit, same coordinates
    assert (one.attrs["ranks"], two.attrs["ranks"]) == (1, 2)
    assert one.attrs["seed"] == two.attrs["seed"] == 3
    assert float(two["u"].std("sample").min()) > 0  # five different samples
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left behind


def test_reconstruct_on_two_ranks_writes_the_one_process_file(files, tmp_path):
    common = ["reconstruct", "--checkpoint", str(files / "prior"), "--observations"]
    common += [str(files / "obs.nc"), "--members", "5", "--steps", "2", "--seed", "1"]
    common += ["--batch-size", "1", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "one.nc")]) == 0
    stdout = torchrun(_cli(*common, "--out", str(tmp_path / "two.nc")))
    assert stdout.count("wrote 5 members") == 1
    one, two = open_dataset(tmp_path / "one.nc"), open_dataset(tmp_path / "two.nc")
    xr.testing.assert_equal(one, two)  # members, u_mean, u_std, sensors: bit for bit
    assert list(two["member"].values) == [0, 1, 2, 3, 4]
    assert (one.attrs["ranks"], two.attrs["ranks"]) == (1, 2)
    assert float(two["u_std"].min()) > 0


def test_an_existing_output_stops_every_rank_before_sampling(files, tmp_path):
    """Rank 0 checks --out; its verdict reaches rank 1, so neither waits in a gather."""
    out = tmp_path / "taken.nc"
    out.write_text("keep me")
    argv = _cli("prior", "sample", "--checkpoint", str(files / "prior"), "--samples", "4")
    with pytest.raises(AssertionError, match="exited") as failure:
        torchrun([*argv, "--out", str(out)], timeout=60)
    assert "pass --overwrite" in str(failure.value)
    assert out.read_text() == "keep me"


# ------------------------------------------------------------------ 1 process, two splits
@pytest.fixture
def two_rank_blocks(monkeypatch):
    """``as_rank(r)``: make this process rank ``r`` of 2, without a process group."""

    def as_rank(rank):
        ctx = distributed.Context(rank=rank, world_size=2)
        monkeypatch.setattr(distributed, "context", lambda: ctx)

    yield as_rank
    monkeypatch.undo()


def test_reconstruct_members_do_not_depend_on_batch_or_shard(files, two_rank_blocks):
    from sciml_diffusion.diffusion import Prior
    from sciml_diffusion.fields import Observations
    from sciml_diffusion.inverse import reconstruct

    prior = Prior.load(files / "prior")
    obs = Observations.from_xarray(open_dataset(files / "obs.nc"))
    options = dict(members=5, steps=2, generator=4, progress=False)
    whole = reconstruct(prior, obs, **options)
    batched = reconstruct(prior, obs, batch_size=2, **options)
    xr.testing.assert_allclose(whole, batched, **TOL_MMPS)
    parts = []
    for rank in (0, 1):
        two_rank_blocks(rank)
        parts.append(reconstruct(prior, obs, sharded=True, **options)["u"])
    assert [list(p["member"].values) for p in parts] == [[0, 1, 2], [3, 4]]
    xr.testing.assert_allclose(xr.concat(parts, "member"), whole["u"], **TOL_MMPS)


def test_design_selection_does_not_depend_on_the_member_batches():
    """The posterior ensemble is the expensive part of design; batching it (as ranks do)
    leaves the ensemble, and so the picks and their EIG, unchanged."""
    from sciml_diffusion.inverse.design import suggest_sensors
    from tests.inverse.conftest import gaussian_case

    prior, _, obs = gaussian_case(ndim=1, sensors=4, noise_std=0.05)
    options = dict(members=12, generator=2, steps=6, noise_std=0.05)
    whole = suggest_sensors(prior, obs, 3, "eig", **options)
    batched = suggest_sensors(prior, obs, 3, "eig", batch_size=5, **options)
    np.testing.assert_array_equal(whole.coords, batched.coords)
    assert whole.variable == batched.variable
    np.testing.assert_allclose(whole.value, batched.value, rtol=1e-5)
    for name, (value, _) in whole.eig.items():
        assert batched.eig[name][0] == pytest.approx(value, rel=1e-5)


@pytest.mark.parametrize("method", ["diffusion", "dyffusion", "rolling"])
def test_forecast_members_do_not_depend_on_batch_or_shard(method, two_rank_blocks):
    from sciml_diffusion import forecast
    from tests.forecast.conftest import TINY, waves

    train = FieldDataset(waves(samples=2, steps=6))
    model = forecast.METHODS[method].create(train, forecast.ForecastConfig(**TINY, method=method))
    initial = waves(samples=2, steps=3, seed=1)
    options = dict(lead_times=[1, 3], members=5, generator=7)
    whole = model.forecast(initial, **options)["u"].values
    batched = model.forecast(initial, batch_size=2, **options)["u"].values
    parts = []
    for rank in (0, 1):
        two_rank_blocks(rank)
        parts.append(model.forecast(initial, sharded=True, **options)["u"].values)
    # untrained networks reach |u| ~ 100: float32 rounding relative to the field's scale
    scale = np.abs(whole).max()
    assert np.abs(batched - whole).max() <= 1e-5 * scale
    assert np.abs(np.concatenate(parts, axis=1) - whole).max() <= 1e-5 * scale
    assert whole.std(1).mean() > 1e-3 * scale  # MC dropout / noise: the members differ


@pytest.mark.parametrize("posterior", ["marginal", "drift"])
def test_sde_forecast_members_do_not_depend_on_sequence_batches_or_member_blocks(posterior):
    from sciml_diffusion.sde.evaluate import forecast
    from sciml_diffusion.sde.latent import LatentSDE
    from sciml_diffusion.sde.series import ObservedSeries

    torch.manual_seed(0)
    model = LatentSDE(2, 3, hidden=16, context_dim=8, posterior=posterior)
    values = torch.randn(5, 8, 2, generator=torch.Generator().manual_seed(0))
    series = ObservedSeries.from_tensors(torch.linspace(0.0, 1.0, 8), values)
    lead = torch.tensor([0.25, 0.5])
    _, whole = forecast(model, series, lead, members=4, dt=0.05, seed=3)
    by_members = [
        forecast(model, series, lead, members=block, dt=0.05, seed=3)[1]
        for block in (range(0, 1), range(1, 4))
    ]
    torch.testing.assert_close(torch.cat(by_members, 0), whole, **TOL)
    by_sequences = [
        forecast(
            model, series[torch.tensor(rows)], lead, members=4, dt=0.05, seed=3, sequences=rows
        )[1]
        for rows in ([0, 1], [2, 3, 4])
    ]
    torch.testing.assert_close(torch.cat(by_sequences, 1), whole, **TOL)
    assert whole.std(0).min() > 0
