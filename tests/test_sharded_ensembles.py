"""Ensembles sharded by member: the file written on 2 processes is the 1-process file.

Member ``i`` draws from generators seeded by (seed, ``i``), so which batch or rank computes
it does not change its draws. With the same batches (``--batch-size 1``) the 2-process file
equals the 1-process one bit for bit; with other batches (a batch of 2 against one of 5)
only float32 rounding in batched kernels differs, hence the tolerances ``TOL`` (samplers)
and ``TOL_MMPS`` (MMPS's Krylov solve amplifies that rounding) for those comparisons.

The 2-process runs use ``torchrun --standalone --nproc_per_node=2`` (gloo) through
:func:`tests.torchrun.torchrun`, with exactly the commands of ``docs/scaling.md``.
The 1-process tests split the members as two ranks would (:func:`two_rank_blocks`, a
context of rank ``r`` of 2 without a process group, so nothing is gathered) and as
batches, and compare with the whole ensemble.
"""

from __future__ import annotations

from pathlib import Path

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


#: the commands of docs/scaling.md, run in a folder holding prior_run and obs.nc
PRIOR_SAMPLE = "prior sample --checkpoint prior_run --samples 5 --steps 3 --seed 3 --batch-size 1"
RECONSTRUCT = (
    "reconstruct --checkpoint prior_run --observations obs.nc --members 5 --steps 2 --seed 1 "
    "--batch-size 1"
)
#: design, forecast run and sde forecast, run in a folder holding the runs of `more_runs`
OTHERS = {
    "design": "design --checkpoint prior_run --observations obs.nc --add 2 --members 6 "
    "--steps 2 --noise-std 0.01 --seed 2 --batch-size 1 --quiet",
    "forecast": "forecast run --checkpoint forecast_run --initial initial.nc --lead-times 1,3 "
    "--members 5 --seed 4 --batch-size 1",
    "sde": "sde forecast --checkpoint sde_run --data ou.nc --members 5 --horizon 3 --batch 3 "
    "--seed 2 --quiet",
    # one member on two ranks: rank 1 computes none
    "one_member": "sde forecast --checkpoint sde_run --data ou.nc --members 1 --horizon 2 --quiet",
    "one_sample": "prior sample --checkpoint prior_run --samples 1 --steps 2 --quiet",
}
TORCHRUN = "torchrun --standalone --nproc_per_node=2 -m sciml_diffusion.cli"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"


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
    argv = ["prior", "train", "--data", str(root / "data.nc"), "--out", str(root / "prior_run")]
    assert main([*argv, *TINY_PRIOR, "--noise", "white"]) == 0
    argv = ["observe", "--data", str(root / "data.nc"), "--count", "10", "--variables", "u"]
    assert main([*argv, "--noise-std", "0.01", "--out", str(root / "obs.nc")]) == 0
    return root


@pytest.fixture
def workdir(files, tmp_path, monkeypatch):
    """A fresh folder with ``prior_run`` and ``obs.nc`` (links), the current directory."""
    for name in ("prior_run", "obs.nc"):
        (tmp_path / name).symlink_to(files / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _one_and_two_ranks(command: str, workdir: Path):
    """``command`` on 1 process (in this one) and on 2 with torchrun: the two files."""
    assert main([*command.split(), "--quiet", "--out", "one.nc"]) == 0
    stdout = torchrun(
        [*TORCHRUN.split()[3:], *command.split(), "--quiet", "--out", "two.nc"], cwd=workdir
    )
    return open_dataset(workdir / "one.nc"), open_dataset(workdir / "two.nc"), stdout


def test_prior_sample_on_two_ranks_writes_the_one_process_file(workdir):
    one, two, stdout = _one_and_two_ranks(PRIOR_SAMPLE, workdir)
    assert stdout.count("wrote 5 samples") == 1  # rank 0 alone writes and prints
    xr.testing.assert_equal(one, two)  # bit for bit, same coordinates
    assert (one.attrs["ranks"], two.attrs["ranks"]) == (1, 2)
    assert one.attrs["seed"] == two.attrs["seed"] == 3
    assert float(two["u"].std("sample").min()) > 0  # five different samples
    assert not list(workdir.glob(".*tmp"))  # written atomically, nothing left behind


def test_reconstruct_on_two_ranks_writes_the_one_process_file(workdir):
    one, two, stdout = _one_and_two_ranks(RECONSTRUCT, workdir)
    assert stdout.count("wrote 5 members") == 1
    xr.testing.assert_equal(one, two)  # members, u_mean, u_std, sensors: bit for bit
    assert list(two["member"].values) == [0, 1, 2, 3, 4]
    assert (one.attrs["ranks"], two.attrs["ranks"]) == (1, 2)
    assert float(two["u_std"].min()) > 0


def test_the_docs_show_the_commands_these_tests_run():
    text = " ".join(DOCS.read_text().replace("\\\n", " ").split())
    for command in (PRIOR_SAMPLE, RECONSTRUCT, *OTHERS.values()):
        if "--members 1 " not in command and "--samples 1 " not in command:
            assert f"{TORCHRUN} {command}" in text


@pytest.fixture(scope="module")
def more_runs(files):
    """A tiny DYffusion forecaster and latent SDE beside the prior (1 training step each)."""
    from sciml_diffusion import forecast
    from tests.forecast.conftest import TINY, waves

    config = {**TINY, "method": "dyffusion", "steps": 1, "checkpoint_every": 1}
    forecast.fit(
        waves(samples=2, steps=6), config=config, out=files / "forecast_run", progress=False
    )
    waves(samples=2, steps=3, seed=1).to_netcdf(files / "initial.nc")
    ou = ["sde", "simulate", "ou", "--samples", "6", "--times", "6"]
    assert main([*ou, "--out", str(files / "ou.nc")]) == 0
    argv = ["sde", "train", "--data", str(files / "ou.nc"), "--out", str(files / "sde_run")]
    argv += ["--latent-dim", "1", "--hidden", "4", "--context-dim", "2", "--steps", "2"]
    assert main([*argv, "--batch-size", "4", "--quiet"]) == 0
    return files


def test_design_forecast_and_sde_forecast_on_two_ranks(more_runs, workdir):
    """One process group runs an output-path error (every rank stops with exit 2, none
    hangs) then the three other commands; their files equal the 1-process ones."""
    for name in ("forecast_run", "initial.nc", "sde_run", "ou.nc"):
        (workdir / name).symlink_to(more_runs / name)
    (workdir / "taken.nc").write_text("keep me")
    taken = PRIOR_SAMPLE + " --out taken.nc"
    commands = [taken] + [f"{c} --out {name}_two.nc" for name, c in OTHERS.items()]
    script = Path(__file__).with_name("cli_in_one_group.py")
    stdout = torchrun([str(script), *commands], cwd=workdir)
    for rank in (0, 1):
        assert f"rank {rank} exit 2: {taken}" in stdout
        for command in commands[1:]:
            assert f"rank {rank} exit 0: {command}" in stdout
    assert (workdir / "taken.nc").read_text() == "keep me"
    for name, command in OTHERS.items():
        assert main([*command.split(), "--out", f"{name}_one.nc"]) == 0
        one = open_dataset(workdir / f"{name}_one.nc")
        two = open_dataset(workdir / f"{name}_two.nc")
        assert (one.attrs["ranks"], two.attrs["ranks"]) == (1, 2)
        if name == "sde":  # the latent SDE's networks see 3 x 5 rows against 3 x 3 or 2
            xr.testing.assert_allclose(one, two, **TOL)
        else:  # the same batches of one member: bit for bit
            xr.testing.assert_equal(one, two)
    design = open_dataset(workdir / "design_two.nc")
    np.testing.assert_array_equal(
        design.attrs["criterion_value"],
        open_dataset(workdir / "design_one.nc").attrs["criterion_value"],
    )


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

    prior = Prior.load(files / "prior_run")
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
