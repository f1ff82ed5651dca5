"""``reconstruct``: a posterior ensemble of full fields from sparse sensor readings.

Every check of the inputs (variables, sensor positions, NaN values, noise std, PDE
variables, output grid) happens before the first denoiser call; then the members are
sampled in batches through one of the guidance methods, and the ensemble comes back as an
``xarray.Dataset`` in physical units with its mean, std, the sensors and a record of how
it was made.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch
import xarray as xr

from sciml_diffusion import distributed
from sciml_diffusion.diffusion.prior import member_generators
from sciml_diffusion.fields import Grid, Observations
from sciml_diffusion.inverse.guidance import DPS, MMPS, DiffusionPDE, FunDPS, PDETerm
from sciml_diffusion.inverse.operators import Measurement, sensor_measurement

__all__ = ["reconstruct", "METHODS", "build_guidance"]

#: method name -> (guidance class, default sampler, default steps)
METHODS = {
    "mmps": (MMPS, "heun", 32),
    "dps": (DPS, "heun", 100),
    "fundps": (FunDPS, "heun", 500),
    "diffusionpde": (DiffusionPDE, "heun", 2000),
}


def build_guidance(
    method: str, measurement: Measurement, prior, grid: Grid, pde, steps, **options
):
    """The guidance object of ``method`` for ``prior`` on ``grid`` (see :data:`METHODS`)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    cls = METHODS[method][0]
    common = {"noise": prior.noise, "grid": grid}
    if method in ("fundps", "diffusionpde"):
        common["pde"] = pde
    elif pde is not None:
        raise ValueError(f"{method} takes no PDE term; use fundps or diffusionpde with pde=")
    if method == "diffusionpde":
        common["steps"] = steps
    try:
        return cls(measurement, **common, **options)
    except TypeError as error:
        raise ValueError(f"bad option for {method}: {error}") from error


def reconstruct(
    prior,
    observations: Observations | Measurement,
    method: str = "mmps",
    pde=None,
    members: int = 16,
    steps: int | None = None,
    grid: Grid | None = None,
    generator: int | torch.Generator | None = None,
    device=None,
    sampler: str | None = None,
    noise_std: float | Mapping[str, float] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    case: int | None = None,
    sharded: bool = False,
    sigma_max: float = 80.0,
    sigma_min: float = 0.002,
    bf16: bool = False,
    **method_options,
) -> xr.Dataset:
    """Sample ``members`` fields from the posterior given the observations.

    Parameters
    ----------
    prior : Prior or GaussianPrior
        The diffusion prior (``Prior.load(run_dir)``) or an exact Gaussian one.
    observations : Observations or Measurement
        Point sensors in physical units (NaN = not observed), or any
        :class:`~sciml_diffusion.inverse.Measurement` on normalised fields.
    method : str
        ``mmps`` (default), ``dps``, ``fundps`` or ``diffusionpde``.
    pde : str or pdes.Problem, optional
        A problem whose residual guides ``fundps`` / ``diffusionpde`` (e.g. ``"darcy"``).
    members : int
        Ensemble size.
    steps : int, optional
        Sampler steps (default per method: 32, 100, 500, 2000).
    grid : Grid, optional
        Output grid on the prior's domain (default the training grid).
    generator : int or torch.Generator, optional
        Seed (member ``i`` is reproducible from it whatever the batch); default 0.
    device : str or torch.device, optional
        Where to sample (default the prior's device).
    sampler : str, optional
        Any of the prior's samplers (default ``heun``).
    noise_std : float or mapping variable -> float, optional
        Sensor noise std (physical units), overriding the observations'.
    batch_size : int, optional
        Members per denoiser batch (default all at once).
    progress : bool
        tqdm bars over batches and steps.
    case : int, optional
        Which case of observations holding several (values ``(B, S, V)``); without it
        every case is reconstructed, all members of all cases batched together, and
        the result has a ``case`` dim before ``member``. Case ``c`` uses seed ``seed + c``.
    bf16 : bool
        bfloat16 autocast around each network call on CUDA; the guidance arithmetic stays
        float32. A no-op on CPU (off by default).
    sharded : bool
        Split the members across the ranks of a ``torchrun`` process group
        (:func:`~sciml_diffusion.distributed.member_block`); rank 0 gathers them and returns
        the whole ensemble (its mean and std from all members), the other ranks ``None``.
        Member ``i`` is the same whatever ``batch_size`` and the number of ranks.
    **method_options
        Passed to the guidance class (``zeta``, ``iterations``, ``obs_weight``, ...).

    Returns
    -------
    xarray.Dataset or None
        ``<var>(member, *space)``, ``<var>_mean``, ``<var>_std``, the sensors
        (``sensor_<axis>``, ``<var>_observed`` over dim ``sensor``), attrs ``method``,
        ``sampler``, ``steps``, ``nfe`` (denoiser evaluations per member), ``vjp`` (backward
        passes per member), ``seed``, ``members``, ``seconds``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(f"members must be a positive integer, got {members!r}")
    grid = prior.check_grid(grid)
    steps = int(steps) if steps is not None else METHODS[method][2]
    sampler = sampler or METHODS[method][1]
    if isinstance(observations, Measurement):
        measurement = observations
    else:
        measurement = sensor_measurement(
            observations, grid, prior.variables, prior.normalizer, noise_std, case
        )
    cases = measurement.y.shape[0] if measurement.y.ndim == 2 else 1
    pde_term = _pde_term(pde, prior, grid)
    guidance = build_guidance(method, measurement, prior, grid, pde_term, steps, **method_options)
    seed = seed_of(generator)
    device = torch.device(device) if device is not None else prior.device
    prior.denoiser.to(device)
    measurement.to(device)

    # this rank's members: row j of its batch is member block[j % len(block)] of case
    # j // len(block); case c draws from seed + c, so one case alone with generator=seed + c
    # gives the same members
    block = distributed.member_block(members, sharded)
    generators = [
        g
        for c in range(cases)
        for g in member_generators(seed + c, len(block), device, start=block.start)
    ]
    batch_size = batch_size or max(len(generators), 1)
    batches = range(0, len(generators), batch_size)
    start = time.perf_counter()
    chunks = [torch.empty(0, len(prior.variables), *grid.shape, device=device)]
    for first in _bar(batches, progress and len(batches) > 1):
        rows = torch.arange(first, min(first + batch_size, len(generators)))
        guidance.measurement = measurement.rows(rows // len(block))
        chunk = prior.sample_tensor(
            len(rows),
            grid=grid,
            sampler=sampler,
            steps=steps,
            generator=generators[first : first + batch_size],
            guidance=guidance,
            progress=progress,
            sigma_max=sigma_max,
            sigma_min=sigma_min,
            bf16=bf16,
        )
        chunks.append(chunk.detach())
    guidance.measurement = measurement
    x = torch.cat(chunks).reshape(cases, len(block), *chunks[0].shape[1:])
    x, indices = distributed.gather_members(x.transpose(0, 1), block)
    if x is None:  # not rank 0: its members went to rank 0
        return None
    x = x.transpose(0, 1) if measurement.y.ndim == 2 else x[:, 0]
    seconds = time.perf_counter() - start
    fields = prior.normalizer.denormalize(x.double().cpu())
    attrs = {
        "method": method,
        "sampler": sampler,
        "steps": steps,
        "nfe": guidance.evaluations // max(len(batches), 1),
        "vjp": guidance.vjps // max(len(batches), 1),
        "seed": seed,
        "members": members,
        "cases": cases,
        "seconds": round(seconds, 3),
        "sigma_max": sigma_max,
        "pde": pde_term.problem.name if pde_term is not None else "",
        **{f"option_{k}": v for k, v in guidance.options().items()},
    }
    return _ensemble_dataset(fields, prior.variables, grid, observations, attrs, case, indices)


def _pde_term(pde, prior, grid: Grid) -> PDETerm | None:
    if pde is None:
        return None
    if isinstance(pde, str):
        from sciml_diffusion import pdes

        pde = pdes.get(pde)
    return PDETerm(pde, prior.variables, prior.normalizer, grid)


def seed_of(generator) -> int:
    """The int seed of ``generator``: ``None`` is 0, an int itself, a Generator one draw."""
    if generator is None:
        return 0
    if isinstance(generator, torch.Generator):
        return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return int(generator)
    raise ValueError(f"generator must be an int seed or a torch.Generator, got {generator!r}")


def _bar(batches, show: bool):
    if not show:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc="member batches")


def _ensemble_dataset(
    fields, variables, grid: Grid, observations, attrs, case, indices
) -> xr.Dataset:
    """``([cases,] M, C, *space)`` physical fields (members ``indices``) as the data set."""
    spatial = tuple(grid.axes)
    lead = ("case", "member") if fields.ndim == grid.ndim + 3 else ("member",)
    axis = len(lead) - 1  # the member axis
    data = {}
    for c, name in enumerate(variables):
        values = fields.select(axis + 1, c).numpy()
        outer = lead[:-1]
        data[name] = ((*lead, *spatial), values.astype(np.float32))
        data[f"{name}_mean"] = ((*outer, *spatial), values.mean(axis))
        spread = values.std(axis, ddof=1) if values.shape[axis] > 1 else 0 * values.mean(axis)
        data[f"{name}_std"] = ((*outer, *spatial), spread)
    coords = dict(grid.xarray_coords())
    coords["member"] = ("member", np.asarray(indices))
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    if isinstance(observations, Observations):
        ds = ds.merge(_sensor_variables(observations, case if lead == ("member",) else None))
        ds.attrs["noise_std"] = observations.noise_std
    return ds


def _sensor_variables(observations: Observations, case) -> xr.Dataset:
    data = {
        f"sensor_{axis}": ("sensor", observations.coords[:, i])
        for i, axis in enumerate(observations.axes)
    }
    values = observations.values
    dims = ("sensor",)
    if values is not None and values.ndim == 3:
        if case is not None or len(values) == 1:
            values = values[case if case is not None else 0]
        else:
            dims = ("case", "sensor")
    if values is not None:
        for k, name in enumerate(observations.variables):
            data[f"{name}_observed"] = (dims, values[..., k].numpy())
    return xr.Dataset(data)
