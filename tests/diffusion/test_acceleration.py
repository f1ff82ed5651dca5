"""GPU fast paths on CPU: bf16 autocast is a no-op, torch.compile keeps results and weights.

The compile tests use torch.compile's ``aot_eager`` backend (Dynamo tracing and AOTAutograd,
no code generation: seconds); the inductor backend, which needs a C compiler on CPU and
takes ~40 s for the tiny model here, is checked by the experiment-marked test at the end
and on GPU by ``benchmarks/gpu.py``.
"""

import contextlib
import warnings

import pytest
import torch

from sciml_diffusion.diffusion import Prior, TrainConfig, acceleration, train_prior
from sciml_diffusion.diffusion.acceleration import (
    CompiledDenoiser,
    bf16_autocast,
    plain_state_dict,
)
from sciml_diffusion.diffusion.noise import WhiteNoise
from sciml_diffusion.diffusion.prior import build_denoiser
from sciml_diffusion.fields import Grid, Normalizer


def tiny_prior(ndim=2, n=12, **options) -> Prior:
    grid = Grid.regular((n,) * ndim)
    model = {
        "channels": 2,
        "n_modes": [4] * ndim,
        "width": 8,
        "n_layers": 2,
        "domain": [[0.0, 1.0]] * ndim,
    }
    with torch.random.fork_rng():
        torch.manual_seed(0)
        denoiser = build_denoiser({"model": model, "sigma_data": 0.8}).eval()
    normalizer = Normalizer(["a", "u"], [0.0, 1.0], [1.0, 2.0], spatial_ndim=ndim)
    return Prior(denoiser, WhiteNoise(), normalizer, grid, **options)


@pytest.fixture
def fast_backend(monkeypatch):
    monkeypatch.setattr(acceleration, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_bf16_autocast_is_a_null_context_off_cuda():
    assert isinstance(bf16_autocast("cpu"), contextlib.nullcontext)
    assert isinstance(bf16_autocast(torch.device("cpu"), True), contextlib.nullcontext)
    assert isinstance(bf16_autocast("cuda", enabled=False), contextlib.nullcontext)


@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("sampler", ["heun", "em"])
def test_bf16_sampling_on_cpu_is_identical_and_enters_no_autocast(ndim, sampler):
    prior = tiny_prior(ndim)
    seen = []
    prior.denoiser.register_forward_pre_hook(
        lambda *_: seen.append(torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled())
    )
    with torch.no_grad():
        plain = prior.sample_tensor(3, steps=4, sampler=sampler, generator=5)
        fast = prior.sample_tensor(3, steps=4, sampler=sampler, generator=5, bf16=True)
        by_default = tiny_prior(ndim, bf16=True)
        default = by_default.sample_tensor(3, steps=4, sampler=sampler, generator=5)
    assert seen and not any(seen)
    assert fast.dtype == torch.float32
    assert torch.equal(plain, fast) and torch.equal(plain, default)


def test_bf16_reconstruct_on_cpu_is_identical():
    from sciml_diffusion.inverse import reconstruct
    from sciml_diffusion.inverse.operators import Measurement

    prior = tiny_prior()
    index = torch.tensor([5, 40, 77, 130])

    def gather(x):
        return x.reshape(x.shape[0], -1)[:, index]

    y = torch.tensor([0.3, -0.2, 0.1, 0.5])
    runs = [
        reconstruct(prior, Measurement(gather, y, 0.1), members=2, steps=3, progress=False, bf16=b)
        for b in (False, True)
    ]
    assert (runs[0]["a"] == runs[1]["a"]).all() and (runs[0]["u"] == runs[1]["u"]).all()


def test_compiled_sampling_matches_eager(fast_backend):
    eager = tiny_prior()
    compiled = tiny_prior(compile=True)
    assert isinstance(compiled.network, CompiledDenoiser)
    with torch.no_grad():
        a = eager.sample_tensor(2, steps=3, generator=1)
        b = compiled.sample_tensor(2, steps=3, generator=1)
    assert compiled.network.failure is None
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert not any("_orig_mod" in k for k in compiled.denoiser.state_dict())


def _broken_backend(graph, inputs):
    raise RuntimeError("this backend cannot lower the graph")


def test_failed_compilation_falls_back_to_eager_with_a_warning():
    prior = tiny_prior()
    network = CompiledDenoiser(prior.denoiser, backend=_broken_backend)
    x, sigma = torch.randn(2, 2, 12, 12), torch.tensor([0.5, 2.0])
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="runs eagerly"):
        out = network(x, sigma, grid=prior.grid)
    assert "cannot lower" in network.failure
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning, then plain eager calls
        again = network(x, sigma, grid=prior.grid)
        expected = prior.denoiser(x, sigma, grid=prior.grid)
    assert torch.equal(out, expected) and torch.equal(again, expected)
    assert network.sigma_data == prior.denoiser.sigma_data  # attributes are the module's
    torch._dynamo.reset()


def test_a_user_error_is_raised_not_swallowed():
    prior = tiny_prior()
    network = CompiledDenoiser(prior.denoiser, backend=_broken_backend)
    with pytest.raises(ValueError, match="expected a field"):
        network(torch.randn(2, 3, 12, 12), torch.ones(2), grid=prior.grid)
    assert network.failure is None  # a bad input is not a compilation failure
    torch._dynamo.reset()


def test_plain_state_dict_unwraps_compiled_and_wrapped_modules():
    module = build_denoiser(
        {"model": {"channels": 1, "n_modes": [2], "width": 4, "n_layers": 1}, "sigma_data": 1}
    )
    keys = set(module.state_dict())
    assert set(plain_state_dict(torch.compile(module, backend="eager"))) == keys
    assert set(plain_state_dict(CompiledDenoiser(module, backend="eager"))) == keys
    assert any(k.startswith("_orig_mod.") for k in torch.compile(module).state_dict())


def test_compiled_training_matches_eager_and_saves_plain_keys(
    field_data, tiny, tmp_path, fast_backend
):
    tiny.update(steps=2, checkpoint_every=2, val_every=100)
    eager = train_prior(field_data, tiny, out=tmp_path / "eager", progress=False)
    from torch._dynamo.utils import counters

    counters.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = train_prior(
            field_data, {**tiny, "compile": True}, out=tmp_path / "compiled", progress=False
        )
    assert not [w for w in caught if "runs eagerly" in str(w.message)]
    assert counters["stats"]["unique_graphs"] >= 1  # the training step went through Dynamo
    state = torch.load(tmp_path / "compiled" / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema"):
        assert not any("_orig_mod" in k for k in state[part])
    for (name, p), q in zip(
        eager.denoiser.state_dict().items(), compiled.denoiser.state_dict().values()
    ):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
    loaded = Prior.load(tmp_path / "compiled")  # loads into the plain module
    assert set(loaded.denoiser.state_dict()) == set(state["ema"])


def test_bf16_training_on_cpu_is_identical(field_data, tiny):
    tiny.update(steps=2, val_every=100)
    plain = train_prior(field_data, tiny, progress=False).denoiser.state_dict()
    fast = train_prior(field_data, {**tiny, "bf16": True}, progress=False).denoiser.state_dict()
    assert all(torch.equal(plain[k], fast[k]) for k in plain)


def test_speed_settings_are_checked_and_may_change_on_resume(field_data, tiny, tmp_path):
    with pytest.raises(ValueError, match="compile must be true or false"):
        TrainConfig(compile="yes").validate()
    tiny.update(steps=1, checkpoint_every=1, val_every=100)
    train_prior(field_data, tiny, out=tmp_path / "run", progress=False)
    resumed = {**tiny, "steps": 2, "bf16": True}  # a no-op on CPU, allowed on resume
    train_prior(field_data, resumed, out=tmp_path / "run", resume=True, progress=False)


@pytest.mark.experiment
def test_inductor_compiled_sampling_matches_eager():
    """The default (inductor) backend on CPU: needs gcc, ~40 s for this tiny model."""
    torch._dynamo.reset()
    eager, compiled = tiny_prior(), tiny_prior(compile=True)
    with torch.no_grad():
        a = eager.sample_tensor(2, steps=3, generator=1)
        b = compiled.sample_tensor(2, steps=3, generator=1)
    assert compiled.network.failure is None, compiled.network.failure
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
