import json

import numpy as np
import pytest
import torch

import sciml_diffusion.diffusion.train as train_module
from sciml_diffusion.diffusion import (
    EDMDenoiser,
    NonFiniteLossError,
    Prior,
    WhiteNoise,
    edm_loss,
    train_prior,
)
from sciml_diffusion.diffusion.backbone import ConditionalFNO
from sciml_diffusion.fields import FieldDataset, Grid


def _weights(path):
    return torch.load(path / "checkpoint.pt", weights_only=True)


def test_loss_ignores_masked_points():
    grid = Grid.regular(16, periodic=True)
    torch.manual_seed(0)
    model = EDMDenoiser(ConditionalFNO(1, (4,), width=8, n_layers=1))
    x = torch.randn(4, 1, 16)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[..., :5] = False
    changed = x.clone()
    changed[..., :5] = 100.0

    def loss(data, m):
        gen = torch.Generator().manual_seed(3)
        return edm_loss(model, data, WhiteNoise(), grid, generator=gen, mask=m)

    torch.testing.assert_close(loss(x, mask), loss(changed, mask))
    assert not torch.allclose(loss(x, None), loss(changed, None))


def test_tiny_training_lowers_the_loss(field_data, tiny, tmp_path):
    # the validation loss uses fixed noise, so its values are comparable across steps
    tiny.update(val_every=1000, checkpoint_every=1000, lr=1e-2, val_fraction=0.25)

    def final_val_loss(steps):
        train_prior(
            field_data, {**tiny, "steps": steps}, out=tmp_path / str(steps), progress=False
        )
        lines = (tmp_path / str(steps) / "log.jsonl").read_text().splitlines()
        return json.loads(lines[-1])["val_loss"]

    assert final_val_loss(50) < 0.85 * final_val_loss(1)


def test_resume_continues_exactly(field_data, tiny, tmp_path):
    tiny.update(subsample=[1, 2])
    train_prior(field_data, tiny, out=tmp_path / "full", progress=False)
    train_prior(field_data, {**tiny, "steps": 3}, out=tmp_path / "part", progress=False)
    train_prior(field_data, tiny, out=tmp_path / "part", resume=True, progress=False)
    full, part = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert full["step"] == part["step"] == 6
    for key in ("model", "ema"):
        for name, value in full[key].items():
            torch.testing.assert_close(part[key][name], value, rtol=0, atol=0)


def test_refuses_to_overwrite_and_to_resume_another_config(field_data, tiny, tmp_path):
    out = tmp_path / "run"
    train_prior(field_data, tiny, out=out, progress=False)
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(FileExistsError, match="already holds"):
        train_prior(field_data, tiny, out=out, progress=False)
    with pytest.raises(ValueError, match="width: 8 -> 16"):
        train_prior(field_data, {**tiny, "width": 16}, out=out, resume=True, progress=False)
    other = FieldDataset.from_tensor(
        field_data.to_tensor()[:, :, :8], variables=["a", "u"], grid=Grid.regular(8, periodic=True)
    )
    with pytest.raises(ValueError, match="grid"):
        train_prior(other, {**tiny, "steps": 9}, out=out, resume=True, progress=False)
    with pytest.raises(ValueError, match="variables"):
        train_prior(field_data, {**tiny, "variables": ["u"]}, out=out, resume=True, progress=False)
    assert (out / "checkpoint.pt").read_bytes() == before


def test_nan_stops_with_the_step_and_keeps_the_last_checkpoint(
    field_data, tiny, tmp_path, monkeypatch
):
    calls = {"n": 0}
    real_loss = train_module.edm_loss

    def failing_loss(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(train_module, "edm_loss", failing_loss)
    tiny.update(val_fraction=0.0)
    with pytest.raises(NonFiniteLossError, match="step 5.*step 3"):
        train_prior(field_data, tiny, out=tmp_path / "run", progress=False)
    assert _weights(tmp_path / "run")["step"] == 3


def test_bad_training_inputs(field_data, tiny):
    with pytest.raises(ValueError, match="noise"):
        train_prior(field_data, {**tiny, "noise": "pink"})
    with pytest.raises(ValueError, match="unknown training settings"):
        train_prior(field_data, {**tiny, "widht": 3})
    with pytest.raises(ValueError, match="not in the data"):
        train_prior(field_data, {**tiny, "variables": ["p"]})


def test_trained_prior_loads_and_samples_at_any_resolution(field_data, tiny, tmp_path):
    out = tmp_path / "run"
    trained = train_prior(field_data, tiny, out=out, progress=False)
    prior = Prior.load(out)
    assert prior.variables == ("a", "u") and prior.grid == field_data.grid
    sample = prior.sample(3, steps=4, generator=1)
    assert sample.variables == ("a", "u") and len(sample) == 3
    np.testing.assert_allclose(
        sample.to_tensor(),
        trained.sample(3, steps=4, generator=1).to_tensor(),
        rtol=1e-5,
        atol=1e-5,
    )
    fine = field_data.grid.with_shape(32)
    for sampler in ("euler", "heun", "dpm2m", "stochastic", "em"):
        out_fine = prior.sample_tensor(2, grid=fine, sampler=sampler, steps=3, generator=0)
        assert out_fine.shape == (2, 2, 32) and torch.isfinite(out_fine).all()
    # a member does not depend on the ensemble size
    torch.testing.assert_close(
        prior.sample_tensor(3, sampler="stochastic", steps=3, generator=5)[:1],
        prior.sample_tensor(1, sampler="stochastic", steps=3, generator=5),
    )
    x = prior.normalizer.normalize(field_data.to_tensor()[:2])
    assert prior.denoise(x, torch.tensor([0.1, 1.0])).shape == x.shape


def test_prior_bad_inputs(field_data, tiny, tmp_path):
    out = tmp_path / "run"
    prior = train_prior(field_data, tiny, out=out, progress=False)
    with pytest.raises(ValueError, match="2-D grid"):
        prior.sample(1, grid=Grid.regular((8, 8)), steps=2)
    with pytest.raises(ValueError, match="training domain"):
        prior.sample(1, grid=Grid.regular(16, lengths=2.0, periodic=True), steps=2)
    with pytest.raises(ValueError, match="expects 2"):
        prior.denoise(torch.zeros(1, 3, 16), torch.ones(1))
    with pytest.raises(ValueError, match="unknown sampler"):
        prior.sample(1, sampler="ddim")
    with pytest.raises(FileNotFoundError):
        Prior.load(tmp_path / "missing")
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable prior checkpoint"):
        Prior.load(out)
    torch.save({"something": torch.zeros(2)}, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="not a sciml_diffusion prior checkpoint"):
        Prior.load(out)
    torch.save({"ema": {"w": torch.zeros(2)}, "step": 1}, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="do not fit its config"):
        Prior.load(out)
    torch.save({"ema": {}, "step": 1, "obj": Grid.regular(4)}, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="not a readable prior checkpoint"):
        Prior.load(out)
    (out / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a sciml_diffusion prior config"):
        Prior.load(out)


@pytest.mark.parametrize(
    ("shape", "periodic", "stride", "ok"),
    [
        (17, False, 2, True),
        (16, False, 2, False),
        (16, True, 2, True),
        (15, True, 2, False),
        (13, False, 3, True),
        (13, False, 5, False),
    ],
)
def test_subsample_strides_that_change_the_domain_are_refused(shape, periodic, stride, ok):
    grid = Grid.regular((shape, shape), periodic=periodic)
    x = torch.randn(2, 1, shape, shape)
    data = FieldDataset.from_tensor(x, variables=["a"], grid=grid)
    config = dict(steps=1, width=4, n_layers=1, n_modes=2, device="cpu", subsample=[1, stride])
    if not ok:
        with pytest.raises(ValueError, match=f"stride {stride} changes the domain"):
            train_prior(data, config, progress=False)
        return
    _, _, sub = train_module._subsample(x, torch.ones_like(x, dtype=bool), grid, stride)
    assert sub.same_domain(grid)


def test_normalizer_is_fitted_on_the_training_split_only(tiny, tmp_path):
    grid = Grid.regular(8, periodic=True)
    x = torch.randn(20, 1, 8, generator=torch.Generator().manual_seed(0))
    _, val_idx = train_module._split(20, train_module.TrainConfig(val_fraction=0.25))
    x[val_idx] += 1000.0  # validation samples far away: they must not move the statistics
    data = FieldDataset.from_tensor(x, variables=["a"], grid=grid)
    prior = train_prior(data, {**tiny, "steps": 1, "val_fraction": 0.25}, progress=False)
    train = np.delete(x.numpy(), val_idx.numpy(), axis=0)
    assert prior.normalizer.mean[0] == pytest.approx(float(train.mean()), rel=1e-5)
    assert prior.normalizer.std[0] == pytest.approx(float(train.std()), rel=1e-5)


def test_p_mean_default_follows_the_data_scale(field_data, tiny):
    run = train_module._Run(field_data, train_module._as_config(tiny), None, False)
    sigma_data = run.run_config["sigma_data"]
    assert run.p_mean == pytest.approx(-1.2 + np.log(sigma_data))
    assert -1.3 < run.p_mean < -1.1  # normalised data: sigma_data is close to 1
    explicit = train_module._Run(
        field_data, train_module._as_config({**tiny, "p_mean": -1.2}), None, False
    )
    assert explicit.p_mean == -1.2


@pytest.mark.parametrize("n", [32, 48, 128])
def test_masked_periodic_data_resample_without_ringing(n, tiny):
    grid = Grid.regular((64, 64), periodic=True)

    def smooth(g):
        y, x = g.mesh(torch.float64)
        field = torch.sin(2 * np.pi * x) * torch.cos(4 * np.pi * y)
        return 0.03 * (field + 0.5 * torch.cos(2 * np.pi * (x + 2 * y)))

    def valid(g):
        y, x = g.mesh(torch.float64)
        return (x - 0.5) ** 2 + (y - 0.4) ** 2 > 0.2**2

    data = torch.where(valid(grid), smooth(grid), torch.nan)
    ds = FieldDataset.from_tensor(data[None, None].repeat(2, 1, 1, 1), variables=["a"], grid=grid)
    normalizer = train_module.Normalizer(["a"], [0.0], [1.0], spatial_ndim=2)
    config = train_module.TrainConfig(**{**tiny, "resolution": n})
    x, mask, target = train_module._prepare(ds, ["a"], normalizer, config)
    truth = smooth(target)
    # valid values: within 0.3 % of the field's amplitude (zero filling rang by up to 30 %)
    assert (x[0, 0] - truth)[mask[0, 0]].abs().max() < 1e-4
    # every kept node is valid, and no valid point is lost: a target node lying on a valid
    # data node is kept, as is (at 48) nearly every node whose neighbours are all valid
    kept = mask[0, 0]
    assert not (kept & ~valid(target)).any()
    if n == 32:
        assert torch.equal(kept, valid(target))
    elif n == 128:
        assert kept[::2, ::2][valid(grid)].all()
    else:
        assert kept.sum() > 0.98 * valid(target).sum()


@pytest.mark.parametrize(
    ("periodic", "boundary", "kind"),
    [(False, None, "grf_stationary"), (False, "neumann", "grf"), (True, None, "grf")],
)
def test_training_noise_on_bounded_and_periodic_grids(periodic, boundary, kind):
    grid = Grid.regular((9, 9), periodic=periodic)
    config = train_module.TrainConfig(noise_boundary=boundary)
    noise = train_module._training_noise(config, grid)
    assert noise.to_dict()["kind"] == kind
    assert noise.variance(grid) == pytest.approx(1.0, rel=1e-9)
