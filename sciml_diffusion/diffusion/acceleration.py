"""GPU fast paths for the denoiser: bf16 autocast and ``torch.compile``, both off by default.

- :func:`bf16_autocast` runs the network call under ``torch.autocast(cuda, bfloat16)``:
  matrix products and pointwise linear layers of the backbone run in bfloat16 (Kalamkar et
  al. 2019, "A study of BFLOAT16 for deep learning training"), its spectral convolutions stay
  float32 (:mod:`~sciml_diffusion.diffusion.backbone`), and the denoiser's output is cast
  back to float32 (:class:`~sciml_diffusion.diffusion.precondition.EDMDenoiser`), so the ODE/SDE
  state, the loss and the guidance arithmetic stay float32. On CPU it is a no-op: no
  autocast context is entered at all, and results are bit-identical to the default.
- :class:`CompiledDenoiser` calls a module through ``torch.compile`` (Ansel et al. 2024,
  "PyTorch 2"): sampling (:meth:`Prior.compile`) and the training loss call it, while
  the optimiser, the EMA and a ``DistributedDataParallel`` wrapper keep holding the plain
  module (under DDP the replica's loss calls the compiled one). Compilation happens at
  the first call (and again for a new shape or grid); if it fails there (no C compiler or
  Triton, an operator the backend cannot lower), the module runs eagerly from then on, with
  a warning saying why. The module itself is never replaced, so checkpoints hold its plain
  state dict (no ``_orig_mod.`` prefixes).
  neuraloperator routes its spectral contractions through tensorly's opt_einsum plugin,
  whose path cache Dynamo cannot trace (a graph break in every block, and the backbone's
  block loop falls back to eager); compiling therefore switches tensorly to the backend's
  own ``torch.einsum`` for the process (the same two-operand contraction).
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

__all__ = [
    "bf16_autocast",
    "CompiledDenoiser",
    "compile_denoiser",
    "FastNetwork",
    "plain_state_dict",
    "BACKEND",
]

#: the ``torch.compile`` backend used when none is named
BACKEND = "inductor"


def bf16_autocast(device, enabled: bool = True):
    """A bfloat16 autocast context on CUDA, ``contextlib.nullcontext()`` otherwise.

    Parameters
    ----------
    device : torch.device or str
        Where the network runs; only ``cuda`` devices get autocast.
    enabled : bool
        ``False`` always gives the null context.
    """
    if enabled and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class CompiledDenoiser:
    """``module(*args, **kwargs)`` through ``torch.compile``, eager if compilation fails.

    Parameters
    ----------
    module : nn.Module
        The denoiser (e.g. an :class:`~sciml_diffusion.diffusion.precondition.EDMDenoiser`);
        it is not modified, and attributes not defined here (``sigma_data``, ``parameters``,
        ``state_dict``, ...) are the module's.
    backend : str, optional
        ``torch.compile`` backend (default :data:`BACKEND`, ``"inductor"``).
    **options
        Passed to ``torch.compile`` (``mode="max-autotune"``, ``dynamic=True``, ...).

    Attributes
    ----------
    failure : str or None
        Why compilation failed (then every call runs eagerly), or ``None``.
    """

    def __init__(self, module: nn.Module, backend: str | None = None, **options):
        self.module = module
        self.failure: str | None = None
        _traceable_einsum()
        try:
            self._compiled = torch.compile(module, backend=backend or BACKEND, **options)
        except Exception as error:  # e.g. a Python or platform torch.compile does not support
            self._compiled = None
            self._fall_back(error)

    def __call__(self, *args, **kwargs):
        if self._compiled is None:
            return self.module(*args, **kwargs)
        try:
            return self._compiled(*args, **kwargs)
        except Exception as error:
            out = self.module(*args, **kwargs)  # a user error (bad shape, ...) raises here
            self._compiled = None
            self._fall_back(error)
            return out

    def __getattr__(self, name):
        if name == "module":  # not set yet (during unpickling or a failed __init__)
            raise AttributeError(name)
        return getattr(self.module, name)

    def _fall_back(self, error: Exception) -> None:
        self.failure = "; ".join(_summary(e) for e in _causes(error))[:400]
        warnings.warn(
            f"torch.compile could not compile the denoiser ({self.failure}); it runs eagerly "
            "instead (same results, no speed-up). Drop --compile/compile=True to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )

    def __repr__(self) -> str:
        state = "eager (compilation failed)" if self.failure else "compiled"
        return f"CompiledDenoiser({type(self.module).__name__}, {state})"


def _traceable_einsum() -> None:
    """Let tensorly contract with ``torch.einsum`` instead of opt_einsum (Dynamo-traceable)."""
    try:
        import neuralop.layers.spectral_convolution  # noqa: F401  (it selects opt_einsum)
        from tensorly.plugins import use_default_einsum
    except ImportError:
        return
    use_default_einsum()


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and what it was raised from (a backend failure wraps the real reason)."""
    chain = [error]
    while len(chain) < 4:
        inner = getattr(chain[-1], "inner_exception", None) or chain[-1].__cause__
        if inner is None or inner in chain:
            break
        chain.append(inner)
    return chain


def _summary(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def compile_denoiser(module: nn.Module, enabled: bool = True, **options):
    """``CompiledDenoiser(module, **options)`` if ``enabled``, else ``module`` itself."""
    return CompiledDenoiser(module, **options) if enabled else module


def plain_state_dict(module) -> dict:
    """The state dict of the underlying module of a compiled and/or DDP-wrapped one.

    Unwraps :class:`CompiledDenoiser` (``.module``), ``torch.compile``'s ``OptimizedModule``
    (``._orig_mod``) and ``DistributedDataParallel`` (``.module``), so the keys are the
    plain module's and a checkpoint loads into an unwrapped model.
    """
    while True:
        if isinstance(module, (CompiledDenoiser, FastNetwork)):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module.state_dict()


class FastNetwork:
    """A network call with the fast paths chosen: ``torch.compile`` and/or bf16 autocast.

    ``FastNetwork(module, device, bf16, compile)(*args)`` runs ``module(*args)`` (through a
    :class:`CompiledDenoiser` with ``compile``) inside :func:`bf16_autocast` (CUDA only) and
    casts a bfloat16 output back to float32, so the caller's arithmetic stays float32. The
    module is not modified or wrapped: its parameters, ``state_dict`` and other attributes
    are its own (for networks whose output is not float32 under autocast, e.g. a bare
    :class:`~sciml_diffusion.diffusion.backbone.ConditionalFNO`).

    Parameters
    ----------
    module : nn.Module
    device : torch.device or str
        Where it runs (autocast on ``cuda`` only).
    bf16, compile : bool
        The fast paths; both off gives plain ``module(*args)``.
    """

    def __init__(self, module: nn.Module, device, bf16: bool = False, compile: bool = False):
        self.module = module
        self.device = torch.device(device)
        self.bf16 = bool(bf16)
        self.network = compile_denoiser(module, bool(compile))

    def __call__(self, *args, **kwargs):
        with bf16_autocast(self.device, self.bf16):
            out = self.network(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16:
            return out.float()
        return out

    def __getattr__(self, name):
        if name == "module":
            raise AttributeError(name)
        return getattr(self.module, name)
