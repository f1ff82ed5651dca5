"""Forecasters' GPU fast paths on CPU: bf16 is a bit-identical no-op, torch.compile (the
``aot_eager`` backend: tracing without code generation, seconds) matches eager, and
checkpoints keep the plain networks' keys."""

import pytest
import torch

from sciml_diffusion import forecast
from sciml_diffusion.diffusion import acceleration
from sciml_diffusion.diffusion.acceleration import FastNetwork
from sciml_diffusion.fields import FieldDataset
from sciml_diffusion.forecast.windows import time_tensor
from tests.forecast.conftest import METHODS, TINY, waves


@pytest.fixture
def fast_backend(monkeypatch):
    monkeypatch.setattr(acceleration, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _weights(model):
    return {s: model.networks[s].state_dict() for s in model.stages}


def _forecast(model, **options):
    initial = FieldDataset(waves(samples=2, steps=3, seed=4))
    return model.forecast(initial, [1, 3], members=2, generator=7, **options)


@pytest.mark.parametrize("method", METHODS)
def test_bf16_on_cpu_is_identical_and_enters_no_autocast(method, tmp_path):
    settings = dict(TINY, method=method, steps=2)
    data = FieldDataset(waves())
    plain = forecast.fit(data, None, settings, out=tmp_path / "plain", progress=False)
    fast = forecast.fit(data, None, {**settings, "bf16": True}, progress=False)
    for stage, want in _weights(plain).items():
        for key, value in fast.networks[stage].state_dict().items():
            assert torch.equal(value, want[key]), (stage, key)
    loaded = forecast.load(tmp_path / "plain", bf16=True)
    assert loaded.bf16
    seen = []
    for net in loaded.networks.values():
        net.register_forward_pre_hook(
            lambda *_: seen.append(torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled())
        )
    a = _forecast(forecast.load(tmp_path / "plain"))
    b = _forecast(loaded)
    assert a.identical(b)
    assert seen and not any(seen)


@pytest.mark.parametrize("method", METHODS)
def test_compiled_training_and_forecast_match_eager(method, tmp_path, fast_backend):
    steps = 1 if method == "dyffusion" else 2  # dyffusion: two networks, MC dropout
    settings = dict(TINY, method=method, steps=steps, checkpoint_every=steps)
    data = FieldDataset(waves())
    eager = forecast.fit(data, None, settings, out=tmp_path / "eager", progress=False)
    compiled = forecast.fit(
        data, None, {**settings, "compile": True}, out=tmp_path / "compiled", progress=False
    )
    for stage, want in _weights(eager).items():
        state = torch.load(tmp_path / "compiled" / stage / "checkpoint.pt", weights_only=True)
        assert set(state["model"]) == set(want)  # plain keys: no _orig_mod. prefixes
        for key, value in compiled.networks[stage].state_dict().items():
            torch.testing.assert_close(value, want[key], rtol=1e-4, atol=1e-5, msg=key)
    model = forecast.load(tmp_path / "eager", compile=True)
    got = _forecast(model)
    assert all(isinstance(f, FastNetwork) for f in model._fast.values()) and model._fast
    want = _forecast(forecast.load(tmp_path / "eager"))
    for name in want.data_vars:
        torch.testing.assert_close(
            torch.from_numpy(got[name].values),
            torch.from_numpy(want[name].values),
            rtol=1e-4,
            atol=1e-4,
        )


def test_fast_network_casts_a_bf16_output_back_and_keeps_the_module():
    net = torch.nn.Linear(3, 2)
    fast = FastNetwork(net, "cpu", bf16=True)
    x = torch.randn(4, 3)
    assert torch.equal(fast(x), net(x)) and fast.weight is net.weight
    half = FastNetwork(torch.nn.Linear(3, 2).to(torch.bfloat16), "cpu")
    assert half(x.to(torch.bfloat16)).dtype == torch.float32


def test_forecast_reads_only_the_last_context_frames(tmp_path):
    settings = dict(TINY, method="diffusion", steps=1)
    model = forecast.fit(FieldDataset(waves()), None, settings, progress=False)
    clean = waves(samples=2, steps=6, seed=4)
    broken = clean.copy(deep=True)
    broken["u"][:, :4] = float("inf")  # frames before the context: never read
    FieldDataset(broken.chunk(time=1)).save(tmp_path / "initial.zarr")
    lazy = FieldDataset.open(tmp_path / "initial.zarr", chunks=1)
    assert lazy.is_lazy
    with pytest.raises(ValueError, match="infinite"):  # reading every frame would fail
        time_tensor(FieldDataset(broken), ["u"], model.normalizer)
    want = model.forecast(FieldDataset(clean), [1, 2], members=2, generator=3)
    got = model.forecast(lazy, [1, 2], members=2, generator=3)
    assert got.identical(want)


def test_dyffusion_frozen_interpolator_goes_through_the_fast_paths(monkeypatch):
    calls = set()
    original = FastNetwork.__call__

    def spy(self, *args, **kwargs):
        frozen = not any(p.requires_grad for p in self.module.parameters())
        calls.add((type(self.module).__name__, frozen))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FastNetwork, "__call__", spy)
    settings = dict(TINY, method="dyffusion", steps=1, bf16=True)
    model = forecast.fit(FieldDataset(waves()), None, settings, progress=False)
    assert ("MCDropoutFNO", True) in calls  # the trained interpolator, in the second stage
    assert ("ConditionalFNO", False) in calls and ("MCDropoutFNO", False) in calls
    assert not any(isinstance(net, FastNetwork) for net in model.networks.values())
