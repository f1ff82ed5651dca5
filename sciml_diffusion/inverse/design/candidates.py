"""Where a new sensor may go: admissible (location, variable) pairs minus the sensors placed.

A candidate is one measured number: a position inside the prior's domain and the variable
read there. By default every grid node of every observed variable is a candidate; a user
narrows that with a sensor file of admissible positions (an :class:`Observations`, its
values ignored except that NaN marks a variable not admissible at that position) or with a
boolean mask on the grid. Positions already holding a finite reading of a variable are
removed for that variable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sciml_diffusion.fields import Grid, Observations

__all__ = ["Candidates", "candidate_sensors", "interior_mask"]


class Candidates:
    """``N`` admissible readings: positions ``coords (N, d)`` and ``variables`` (N names).

    Parameters
    ----------
    coords : array ``(N, d)``
        Physical positions, axes in the grid's order.
    variables : sequence of str, length ``N``
        The variable each candidate reads.
    axes : sequence of str
        Names of the ``d`` coordinates.
    """

    def __init__(self, coords, variables: Sequence[str], axes: Sequence[str]):
        self.coords = np.asarray(coords, dtype=np.float64).reshape(len(variables), -1)
        self.variables = tuple(variables)
        self.axes = tuple(axes)

    def __len__(self) -> int:
        return len(self.variables)

    def __repr__(self) -> str:
        return f"Candidates({len(self)} readings of {sorted(set(self.variables))})"

    def read(self, fields: torch.Tensor, grid: Grid, channels: Sequence[str]) -> torch.Tensor:
        """Fields ``(M, C, *grid.shape)`` read at every candidate: ``(M, N)``."""
        out = torch.empty(fields.shape[0], len(self), dtype=fields.dtype)
        for name in sorted(set(self.variables)):
            rows = np.flatnonzero(np.asarray(self.variables) == name)
            probe = Observations(self.coords[rows], variables=[name], axes=self.axes)
            out[:, torch.as_tensor(rows)] = probe.operator(grid, channels)(fields)[..., 0]
        return out

    def matrix(self, grid: Grid, channels: Sequence[str]) -> torch.Tensor:
        """The linear map ``(N, C N_grid)`` from flattened fields to the candidates."""
        out = torch.zeros(len(self), len(channels) * grid.size, dtype=torch.float64)
        for name in sorted(set(self.variables)):
            rows = np.flatnonzero(np.asarray(self.variables) == name)
            probe = Observations(self.coords[rows], variables=[name], axes=self.axes)
            c = list(channels).index(name)
            block = probe.operator(grid, channels).dense()
            out[torch.as_tensor(rows), c * grid.size : (c + 1) * grid.size] = block
        return out

    def subset(self, index) -> Candidates:
        index = np.asarray(index, dtype=np.int64)
        return Candidates(self.coords[index], [self.variables[i] for i in index], self.axes)


def interior_mask(grid: Grid) -> np.ndarray:
    """Boolean ``grid.shape``: false on the edges of non-periodic axes (Dirichlet boundaries)."""
    mask = np.ones(grid.shape, dtype=bool)
    for axis, periodic in enumerate(grid.periodic):
        if not periodic:
            edge = [slice(None)] * grid.ndim
            for end in (0, -1):
                edge[axis] = end
                mask[tuple(edge)] = False
    return mask


def observed_variables(observations: Observations) -> list[str]:
    """The variables with at least one finite reading (all of them without values)."""
    if observations.values is None:
        return list(observations.variables)
    finite = torch.isfinite(observations.values).reshape(-1, len(observations.variables))
    return [v for k, v in enumerate(observations.variables) if bool(finite[:, k].any())]


def candidate_sensors(
    grid: Grid,
    variables: Sequence[str],
    observations: Observations,
    candidates=None,
) -> Candidates:
    """The admissible new readings, checked against the prior's grid and variables.

    Parameters
    ----------
    grid : Grid
        The prior's grid (its domain bounds the candidates).
    variables : sequence of str
        The prior's variables.
    observations : Observations
        The sensors already placed; their observed variables are the default candidates'.
    candidates : None, Observations, or bool array ``grid.shape``
        ``None``: every node of every observed variable; an :class:`Observations`:
        its positions and variables (NaN values mark a variable not admissible there);
        a mask: the nodes where it is true, for every observed variable.

    Raises
    ------
    ValueError
        A variable the prior lacks, a candidate outside the domain, a mask of the wrong
        shape, or no candidate left after removing the sensors already placed.
    """
    variables = list(variables)
    observed = observed_variables(observations)
    _check_variables(observed, variables, "observed")
    if isinstance(candidates, Observations):
        pool = _from_observations(candidates, grid, variables)
    else:
        mask = _mask(candidates, grid)
        nodes = np.flatnonzero(mask)
        coords = _node_coords(grid, nodes)
        names = [v for v in observed for _ in nodes]
        pool = Candidates(np.tile(coords, (len(observed), 1)), names, grid.axes)
    keep = ~_already_placed(pool, observations, grid)
    if not keep.any():
        raise ValueError(
            f"no candidate left: all {len(pool)} admissible readings already hold a sensor"
        )
    return pool.subset(np.flatnonzero(keep))


def _check_variables(names, variables, what: str) -> None:
    unknown = [v for v in names if v not in variables]
    if unknown:
        raise ValueError(
            f"{what} variable(s) {unknown} are not among the prior's variables {variables}"
        )


def _from_observations(candidates: Observations, grid: Grid, variables) -> Candidates:
    _check_variables(candidates.variables, variables, "candidate")
    if candidates.coords.shape[1] != grid.ndim:
        raise ValueError(
            f"candidate positions have {candidates.coords.shape[1]} coordinates, "
            f"the prior's grid {grid.ndim} axes"
        )
    try:
        grid.check_points(candidates.coords)
    except ValueError as error:
        raise ValueError(f"candidate {str(error)[len('sensor ') :]}") from None
    admissible = np.ones((len(candidates), len(candidates.variables)), dtype=bool)
    if candidates.values is not None:
        # NaN marks a variable not admissible there; an all-NaN file (readings still to
        # be taken, as `design` writes) admits every variable at every position
        values = candidates.values.reshape(-1, *admissible.shape)
        finite = torch.isfinite(values).any(0).numpy()
        if finite.any():
            admissible = finite
    rows, cols = np.nonzero(admissible)
    names = [candidates.variables[c] for c in cols]
    return Candidates(candidates.coords[rows], names, grid.axes)


def _mask(candidates, grid: Grid) -> np.ndarray:
    if candidates is None:
        return np.ones(grid.size, dtype=bool)
    values = getattr(candidates, "values", candidates)
    mask = np.asarray(values)
    if mask.shape != grid.shape:
        raise ValueError(
            f"a candidate mask must have the grid's shape {grid.shape}, got {mask.shape}"
        )
    return mask.astype(bool).reshape(-1)


def _node_coords(grid: Grid, nodes: np.ndarray) -> np.ndarray:
    index = np.unravel_index(nodes, grid.shape)
    return np.stack([c[i] for c, i in zip(grid.coords, index)], axis=1).reshape(len(nodes), -1)


def _already_placed(pool: Candidates, observations: Observations, grid: Grid) -> np.ndarray:
    """``(N,)`` true where a candidate coincides with a finite reading already taken."""
    taken = np.zeros(len(pool), dtype=bool)
    if len(pool) == 0 or observations.coords.shape[1] != grid.ndim:
        return taken
    lengths = np.array([hi - lo for lo, hi in grid.bounds], dtype=np.float64)
    tol = 1e-9 * np.maximum(lengths, 1e-300)
    names = np.asarray(pool.variables)
    for k, name in enumerate(observations.variables):
        if observations.values is None:
            readings = observations.coords
        else:
            values = observations.values
            finite = torch.isfinite(values.reshape(-1, *values.shape[-2:]))
            readings = observations.coords[finite[..., k].any(0).numpy()]
        rows = np.flatnonzero(names == name)
        if len(readings) == 0 or len(rows) == 0:
            continue
        close = np.abs(pool.coords[rows, None, :] - readings[None]) <= tol
        taken[rows[close.all(-1).any(-1)]] = True
    return taken
