"""Common generator of the time-dependent, periodic, pseudo-spectral problems.

A subclass of :class:`EvolutionProblem` supplies the initial condition of one sample
(:meth:`~EvolutionProblem.initial_condition`) and the spectral equation on a grid
(:meth:`~EvolutionProblem.equation`, an object with ``solve`` and ``residual``). The
generator integrates batches of samples in torch (CPU or GPU), optionally in several
processes, and saves ``steps + 1`` equally spaced frames from ``spinup`` to
``spinup + final_time``.

Time step: the integrator uses the largest step ``<= dt`` that divides the save interval;
a step whose advective CFL number at the start exceeds the RK4 stability limit is refused
with a ``ValueError`` naming the largest stable step; a solution that becomes non-finite
raises a ``ValueError``; a CFL number that grows above the limit later gives a warning.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from sciml_diffusion.fields import Grid
from sciml_diffusion.fields.dataset import FieldDataset
from sciml_diffusion.pdes.base import (
    Problem,
    batch_device,
    batches,
    build_dataset,
    check_count,
    check_positive,
    map_samples,
    resolve_grid,
    sample_generator,
)
from sciml_diffusion.pdes.spectral import steps_per_interval

__all__ = ["EvolutionProblem"]


class EvolutionProblem(Problem):
    """Base class of trajectory generators; see the module docstring.

    Subclasses set ``final_time``, ``steps``, ``dt``, ``spinup`` in ``__init__`` (through
    :meth:`_set_times`) and implement ``initial_condition``, ``equation``,
    ``trajectory_fields`` and ``residual``.
    """

    spatial_ndim: int = 2

    def _set_times(self, final_time: float, steps: int, dt: float, spinup: float) -> None:
        self.final_time = check_positive("final time", final_time)
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"steps (saved intervals) must be a positive integer, got {steps}")
        self.steps = int(steps)
        self.dt = check_positive("time step dt", dt)
        if not float(spinup) >= 0:
            raise ValueError(f"spin-up time must be >= 0, got {spinup}")
        self.spinup = float(spinup)
        if self.dt > self.interval:
            raise ValueError(
                f"time step dt={self.dt} exceeds the save interval final_time/steps="
                f"{self.interval}; lower dt or save fewer frames"
            )

    @property
    def interval(self) -> float:
        """Time between saved frames, ``final_time / steps``."""
        return self.final_time / self.steps

    @property
    def times(self) -> np.ndarray:
        """Saved times ``spinup + j * interval``, ``j = 0..steps``."""
        return self.spinup + self.interval * np.arange(self.steps + 1)

    def step_size(self) -> float:
        """The integrator's step: the largest ``<= dt`` dividing the save interval."""
        return steps_per_interval(self.interval, self.dt)[1]

    # ------------------------------------------------------------------ subclass hooks
    def initial_condition(self, grid: Grid, generator: torch.Generator) -> torch.Tensor:
        """Initial state ``(*grid.shape)`` of one sample, float64 on the CPU."""
        raise NotImplementedError

    def equation(self, grid: Grid, device=None, dtype=torch.float64):
        """The spectral equation on ``grid`` (``solve`` and ``residual``)."""
        raise NotImplementedError

    def trajectory_fields(self, trajectory: torch.Tensor) -> dict:
        """Data variables ``{name: array}`` from trajectories ``(B, T, *spatial)``."""
        raise NotImplementedError

    def check_grid(self, grid: Grid) -> None:
        """Raise a ``ValueError`` for a grid the scheme cannot use."""
        raise NotImplementedError

    # ------------------------------------------------------------------ generation
    def solve(self, initial: torch.Tensor, grid: Grid, progress: bool = False) -> torch.Tensor:
        """Integrate initial states ``(B, *grid.shape)``; return the saved frames.

        Runs on ``initial``'s device and in its dtype (float32 or float64). ``progress``
        shows a bar over the saved intervals (spin-up included) of this batch.

        Returns
        -------
        torch.Tensor (B, steps + 1, *grid.shape) at :attr:`times`.
        """
        self.check_grid(grid)
        if tuple(initial.shape[1:]) != grid.shape:
            raise ValueError(
                f"initial states of shape {tuple(initial.shape)} are not (B, *{grid.shape})"
            )
        equation = self.equation(grid, device=initial.device, dtype=initial.dtype)
        per_save, dt = steps_per_interval(self.interval, self.dt)
        state = equation.forward(initial)
        equation.check_cfl(state, dt)
        bar = tqdm(
            total=self.steps + (self.spinup > 0), desc="time", unit="interval",
            leave=False, disable=not progress,
        )  # fmt: skip
        with bar:
            if self.spinup > 0:
                spin_steps, spin_dt = steps_per_interval(self.spinup, self.dt)
                state = equation.advance(state, spin_dt, spin_steps, t0=0.0)
                bar.update()
            frames = [equation.inverse(state)]
            for j in range(self.steps):
                state = equation.advance(state, dt, per_save, t0=float(self.times[j]))
                frames.append(equation.inverse(state))
                bar.update()
        return torch.stack(frames, dim=1)

    def generate(
        self,
        n: int,
        grid: Grid | int,
        seed: int = 0,
        *,
        workers: int = 1,
        batch_size: int = 16,
        device=None,
        dtype=torch.float64,
        progress: bool = False,
    ) -> FieldDataset:
        """Generate ``n`` trajectories.

        Parameters
        ----------
        n : int
            Number of samples.
        grid : Grid or int
            A periodic grid, or a resolution on the problem's standard domain.
        seed : int
            Sample ``i`` draws its initial state from ``torch.Generator().manual_seed(seed+i)``.
        workers : int
            CPU processes, each integrating whole batches (1 on a GPU).
        batch_size : int
            Samples integrated together.
        device : str or torch.device, optional
            Where to integrate (default CPU).
        dtype : torch.dtype
            Precision of the integration (data are stored as float32).
        progress : bool
            Show a progress bar.

        Returns
        -------
        FieldDataset with a ``time`` coordinate (the saved times).
        """
        n = check_count(n)
        grid = resolve_grid(self, grid)
        self.check_grid(grid)
        starts, counts = batches(n, batch_size)
        device = batch_device(device, workers)
        inner = progress and workers == 1  # a bar over time inside each batch, in this process
        tasks = [
            (self, grid, seed, s, c, str(device), dtype, inner) for s, c in zip(starts, counts)
        ]
        parts = map_samples(_run_batch, tasks, workers, progress, self.name, weights=counts)
        trajectory = torch.as_tensor(np.concatenate(parts, axis=0))
        return build_dataset(
            self.trajectory_fields(trajectory),
            self.variables,
            grid,
            {**self.recipe_attrs(seed, grid), "dt_used": self.step_size()},
            time=self.times,
        )


def _run_batch(task: tuple) -> np.ndarray:
    problem, grid, seed, start, count, device, dtype, progress = task
    initial = torch.stack(
        [problem.initial_condition(grid, sample_generator(seed, start + i)) for i in range(count)]
    ).to(device=device, dtype=dtype)
    with torch.no_grad():
        frames = problem.solve(initial, grid, progress=progress)
    return frames.to("cpu", torch.float32).numpy()
