"""Data-set recipes: YAML files under ``datasets/`` that regenerate the benchmark sets.

A recipe names a problem, its parameters, and one or more sizes; each size has a
resolution, the number of samples of each split, and optional parameter overrides::

    problem: darcy
    description: Darcy flow, thresholded-GRF permeability (FNO / DiffusionPDE)
    parameters: {alpha: 2.0, tau: 3.0, high: 12.0, low: 3.0}
    seed: 0
    sizes:
      quick: {resolution: 32, splits: {train: 64, test: 16}}
      full:  {resolution: 128, splits: {train: 50000, test: 1000}}

An optional ``name`` (default: the problem) names the files, so that two recipes of one
problem (e.g. ``datasets/poisson.yaml`` and ``datasets/poisson_fundps.yaml``) can share an
output directory: ``{name}_{size}_{split}.nc``.

Split ``k`` (in file order) uses the seed ``seed + k * SPLIT_SEED_STRIDE``, so splits never
share a sample seed (a split holds fewer than ``SPLIT_SEED_STRIDE`` samples) and a split's
data do not depend on the size of the other splits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sciml_diffusion import pdes

__all__ = ["Recipe", "Job", "load_recipe", "SPLIT_SEED_STRIDE"]

#: seed offset between consecutive splits of a recipe
SPLIT_SEED_STRIDE = 100_000_000

_RECIPE_KEYS = {"problem", "name", "description", "parameters", "seed", "sizes", "generate"}
_SIZE_KEYS = {"resolution", "splits", "parameters", "generate"}


@dataclass(frozen=True)
class Job:
    """One file to generate: a split of a recipe at one size."""

    problem: str
    parameters: dict
    resolution: int
    samples: int
    seed: int
    split: str
    size: str
    generate: dict = field(default_factory=dict)
    name: str = ""

    def filename(self) -> str:
        """``{name}_{size}_{split}.nc`` (``name`` defaults to the problem)."""
        return f"{self.name or self.problem}_{self.size}_{self.split}.nc"


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe; :meth:`jobs` lists the files of one size."""

    problem: str
    parameters: dict
    seed: int
    sizes: dict
    description: str = ""
    generate: dict = field(default_factory=dict)
    name: str = ""

    def jobs(self, size: str) -> list[Job]:
        """The files of ``size``, one per split, in file order."""
        if size not in self.sizes:
            raise ValueError(
                f"recipe for {self.problem} has no size {size!r}; sizes: {', '.join(self.sizes)}"
            )
        spec = self.sizes[size]
        parameters = {**self.parameters, **spec.get("parameters", {})}
        generate = {**self.generate, **spec.get("generate", {})}
        return [
            Job(
                problem=self.problem,
                parameters=parameters,
                resolution=int(spec["resolution"]),
                samples=int(samples),
                seed=self.seed + k * SPLIT_SEED_STRIDE,
                split=str(split),
                size=size,
                generate=generate,
                name=self.name or self.problem,
            )
            for k, (split, samples) in enumerate(spec["splits"].items())
        ]


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe YAML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such recipe: {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"recipe {path} must be a YAML mapping with keys {sorted(_RECIPE_KEYS)}")
    _check_keys(data, _RECIPE_KEYS, f"recipe {path}")
    for key in ("problem", "sizes"):
        if key not in data:
            raise ValueError(f"recipe {path} lacks {key!r}")
    problem = str(data["problem"])
    parameters = dict(data.get("parameters") or {})
    pdes.get(problem, **parameters)  # unknown problem or parameter: a clear error now
    sizes = dict(data["sizes"])
    for name, spec in sizes.items():
        where = f"size {name!r} of recipe {path}"
        if not isinstance(spec, dict) or "resolution" not in spec or "splits" not in spec:
            raise ValueError(f"{where} needs 'resolution' and 'splits'")
        _check_keys(spec, _SIZE_KEYS, where)
        splits = spec["splits"]
        if not isinstance(splits, dict) or not splits:
            raise ValueError(f"{where}: 'splits' must map split names to sample counts")
        if any(int(n) < 1 or int(n) >= SPLIT_SEED_STRIDE for n in splits.values()):
            raise ValueError(f"{where}: split sizes must be in [1, {SPLIT_SEED_STRIDE})")
    return Recipe(
        problem=problem,
        parameters=parameters,
        seed=int(data.get("seed", 0)),
        sizes=sizes,
        description=str(data.get("description", "")),
        generate=dict(data.get("generate") or {}),
        name=str(data.get("name") or problem),
    )


def _check_keys(data: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}; allowed: {sorted(allowed)}")
