"""Data-parallel training: batch order, and 2 processes against 1 with twice the batch."""

from __future__ import annotations

import shlex

import pytest
import torch
from torch.utils.data import DistributedSampler

from sciml_diffusion.data_parallel import (
    EpochBatches,
    decided_on_main,
    item_generators,
    scale_note,
)
from sciml_diffusion.distributed import Context
from tests import data_parallel_steps
from tests.torchrun import ROOT, torchrun


def _ranks(n, batch, world, seed=0):
    return [EpochBatches(n, batch, seed, Context(rank=r, world_size=world)) for r in range(world)]


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("n, batch", [(12, 2), (10, 3), (5, 4)])
def test_ranks_split_the_batches_of_one_process_with_the_global_batch(n, batch, world):
    ranks, single = _ranks(n, batch, world), EpochBatches(n, batch * world, 0)
    for _ in range(7):  # across several epochs (and a batch longer than an epoch)
        joined = torch.cat([r.next() for r in ranks])
        torch.testing.assert_close(joined, single.next(), rtol=0, atol=0)
    assert {r.position for r in ranks} == {single.position} == {7 * batch * world}


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_see_disjoint_shards_covering_every_epoch(world):
    n, batch = 24, 2  # 4 or 6 items per step: whole steps per epoch
    ranks = _ranks(n, batch, world, seed=5)
    for _ in range(2):
        seen = [torch.cat([r.next() for _ in range(n // (batch * world))]) for r in ranks]
        joined = torch.cat(seen)
        assert sorted(joined.tolist()) == list(range(n))  # disjoint and complete


@pytest.mark.parametrize("epoch", [0, 1, 4])
def test_epochs_are_the_permutations_of_distributed_sampler(epoch):
    sampler = DistributedSampler(range(11), num_replicas=1, rank=0, shuffle=True, seed=3)
    sampler.set_epoch(epoch)
    assert EpochBatches(11, 2, 3).epoch(epoch).tolist() == list(sampler)


def test_one_process_decides_locally_and_states_the_scale():
    def refuse():
        raise FileExistsError("run exists")

    with pytest.raises(FileExistsError, match="run exists"):
        decided_on_main(refuse)
    assert decided_on_main(lambda a: a + 1, 1) == 2
    assert "effective batch 8 per step" in scale_note("a prior", 8, 1e-3)


@pytest.mark.parametrize("noise", ["white", "grf"])
def test_rows_of_the_global_draw_pair_each_sample_with_its_noise(noise):
    """Half-batches with their rows of one draw average to the loss of the whole batch."""
    from sciml_diffusion.diffusion import EDMDenoiser, GRFNoise, WhiteNoise, edm_loss
    from sciml_diffusion.diffusion.backbone import ConditionalFNO
    from sciml_diffusion.diffusion.loss import draw_noise
    from sciml_diffusion.fields import Grid

    grid = Grid.regular(16, periodic=True)
    process = WhiteNoise() if noise == "white" else GRFNoise.unit_variance(grid, 1.0, 5.0)
    torch.manual_seed(0)
    model = EDMDenoiser(ConditionalFNO(1, (4,), width=8, n_layers=1))
    x = torch.randn(6, 1, 16, generator=torch.Generator().manual_seed(1))
    whole = edm_loss(model, x, process, grid, generator=torch.Generator().manual_seed(2))
    sigma, n = draw_noise(x.shape, process, grid, torch.Generator().manual_seed(2))
    halves = [edm_loss(model, x[r], process, grid, sigma=sigma[r], n=n[r]) for r in _HALVES]
    torch.testing.assert_close((halves[0] + halves[1]) / 2, whole, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="both sigma and n"):
        edm_loss(model, x, process, grid, sigma=sigma)


_HALVES = (slice(0, 3), slice(3, 6))


def test_item_generators_of_a_rank_are_those_of_its_rows_of_the_global_batch():
    whole = item_generators(torch.Generator().manual_seed(4), 6)
    rank_1 = item_generators(torch.Generator().manual_seed(4), 3, start=3)
    draws = [torch.rand(2, generator=g) for g in whole[3:]]
    torch.testing.assert_close(draws, [torch.rand(2, generator=g) for g in rank_1])
    with pytest.raises(ValueError, match="one per item"):
        item_generators(whole, 5)


def _combined(parts: list) -> torch.Tensor:
    """The loss of the whole batch from its parts' :class:`Means`: count-weighted means."""
    total = 0.0
    for k, weight in enumerate(parts[0].weights):
        counts = [float(p.counts[k]) for p in parts]
        sums = sum(float(p.means[k].detach()) * c for p, c in zip(parts, counts))
        total += weight * sums / max(sum(counts), 1.0)
    return torch.tensor(total, dtype=torch.float64)


@pytest.mark.parametrize("method", ["dyffusion", "rolling", "diffusion"])
def test_forecaster_losses_of_half_batches_combine_into_the_whole_batch(method):
    """Each window with the generator of its position, masked means weighted by their
    points: the halves' losses (what two ranks compute) give the whole batch's loss."""
    from sciml_diffusion import forecast
    from sciml_diffusion.forecast.windows import Windows

    data = data_parallel_steps.forecast_data()
    config = forecast.ForecastConfig(**{**data_parallel_steps.FORECAST, "method": method})
    model = forecast.METHODS[method].create(data, config)
    windows = Windows.of(data, model.variables, model.normalizer, config.window)
    x, mask = windows.take(torch.tensor([0, 5, 1, 9, 11, 6]))
    assert mask[:3].sum() != mask[3:].sum()  # NaN land differs between the halves
    for stage in model.stages:
        loss, net = model.stage_loss(stage), model.networks[stage]

        def generators():
            return item_generators(torch.Generator().manual_seed(8), 6)

        whole = loss(net, x, mask, generators()).value().detach()
        halves = [loss(net, x[r], mask[r], generators()[r]) for r in _HALVES]
        torch.testing.assert_close(_combined(halves), whole.double(), rtol=1e-5, atol=0)



#: absolute tolerances (rtol 1e-5 throughout) of the weights compared after 1 and 2 steps.
#: Adam divides each gradient entry by its own size, so an entry whose exact gradient is 0
#: or nearly (the latent SDE encoder's key biases cancel in the attention softmax) moves by
#: lr x rounding noise / (|noise| + eps), differently for another batch split: measured up
#: to 1.2e-5 on the SDE and 1.7e-6 on the Gaussian forecaster, against steps of lr = 3e-3.
ATOL = {"sde matching": 3e-5, "diffusion model": 1e-5}


def test_two_processes_take_the_steps_of_one_with_twice_the_batch(tmp_path):
    """2 gloo ranks x batch 3 against 1 process x batch 6: the same weights.

    The prior's data have NaN holes of different sizes per sample (the masked-mean loss is
    re-weighted across ranks), draw strides 1 or 2, noise levels and GRF noise for the
    global batch; 9 training samples, so step 2 crosses an epoch (weights after 1 and 3
    steps). Every forecaster (DYffusion's interpolator with per-window dropout masks and
    its forecaster with the look-ahead term, rolling diffusion, Gaussian diffusion) trains
    on windows with NaN land differing per sample, and a latent SDE by SDE matching with
    hidden slots and missing values: weights after 1 and 2 steps (resumed from the first).
    Tolerance: float32 sums in another order (measured differences ~2e-7 on weights of
    size ~1; see ``ATOL`` for the two exceptions).
    """
    (tmp_path / "two").mkdir()
    (tmp_path / "one").mkdir()
    torchrun([str(ROOT / "tests" / "data_parallel_steps.py"), str(tmp_path / "two"), "3"])
    two = torch.load(tmp_path / "two" / "weights.pt", weights_only=True)
    one = data_parallel_steps.run(tmp_path / "one", 6)
    assert two["world_size"] == 2
    assert two["synced"] == {"sde adjoint": True}
    parts = {"prior", "stage", "dyffusion interpolator", "dyffusion forecaster"}
    parts |= {"rolling model", "diffusion model", "sde matching"}
    assert parts <= set(one)
    for part, states in one.items():
        if part == "synced":
            continue
        atol = ATOL.get(part, 1e-6)
        for which, state in states.items():
            for name, value in state.items():
                torch.testing.assert_close(
                    two[part][which][name], value, rtol=1e-5, atol=atol, msg=f"{part} {name}"
                )
    for part in parts - {"stage"}:  # the steps change the weights far more
        first, last = one[part]["first"], one[part]["last"]
        assert max(float((last[k] - first[k]).abs().max()) for k in first) > 1e-4, part
    moved = one["prior"]["last"]["backbone.lifting.fcs.0.weight"]
    first = one["prior"]["first"]["backbone.lifting.fcs.0.weight"]
    assert (moved - first).abs().max() > 1e-4


def _documented_command() -> list[str]:
    """The ``torchrun ... prior train`` command of docs/scaling.md, after the launcher."""
    lines = (ROOT / "docs" / "scaling.md").read_text().splitlines()
    words = shlex.split(next(line for line in lines if line.startswith("torchrun ")))
    assert words[:3] == ["torchrun", "--standalone", "--nproc_per_node=2"]
    return words[3:]


def test_documented_prior_train_command_under_torchrun(tmp_path):
    from sciml_diffusion.diffusion import Prior
    from sciml_diffusion.fields import Grid

    data_parallel_steps.field_data().save(tmp_path / "data.nc")
    stdout = torchrun(_documented_command(), cwd=tmp_path)
    assert stdout.count("trained Prior") == 1  # rank 0 alone reports (and writes)
    out = tmp_path / "run"
    prior = Prior.load(out)
    fields = prior.sample(2, grid=Grid.regular((8, 8), periodic=True), steps=2)
    assert len(fields) == 2 and torch.isfinite(fields.to_tensor()).all()
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
