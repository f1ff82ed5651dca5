"""PDE problems: verified generators of benchmark data sets and differentiable residuals.

Each problem (one module each) has ``variables``, ``generate(n, grid, seed, ...)`` returning
a :class:`~sciml_diffusion.fields.FieldDataset`, and ``residual(fields, grid)``. Get one
by name::

    from sciml_diffusion import pdes
    darcy = pdes.get("darcy")
    data = darcy.generate(8, 64, seed=0)       # FieldDataset with a, u on a 64 x 64 grid
    r = darcy.residual(data.to_tensor(["a", "u"]), data.grid)   # ~0 in physical units
"""

from __future__ import annotations

import inspect

from sciml_diffusion.pdes.base import Problem, Variable
from sciml_diffusion.pdes.burgers import Burgers
from sciml_diffusion.pdes.cylinder import CylinderFlow
from sciml_diffusion.pdes.darcy import Darcy
from sciml_diffusion.pdes.helmholtz import Helmholtz
from sciml_diffusion.pdes.kolmogorov import Kolmogorov
from sciml_diffusion.pdes.navier_stokes import NavierStokes
from sciml_diffusion.pdes.poisson import Poisson

__all__ = [
    "Problem",
    "Variable",
    "Darcy",
    "Poisson",
    "Helmholtz",
    "NavierStokes",
    "Kolmogorov",
    "Burgers",
    "CylinderFlow",
    "PROBLEMS",
    "get",
    "names",
]

#: problem classes by registry (and command-line) name
PROBLEMS: dict[str, type[Problem]] = {
    "darcy": Darcy,
    "poisson": Poisson,
    "helmholtz": Helmholtz,
    "navier_stokes": NavierStokes,
    "kolmogorov": Kolmogorov,
    "burgers": Burgers,
    "cylinder": CylinderFlow,
}


def names() -> tuple[str, ...]:
    """The known problem names."""
    return tuple(PROBLEMS)


def get(name: str, **parameters) -> Problem:
    """The problem called ``name``, built with ``parameters`` (defaults: the recipe).

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in PROBLEMS:
        raise ValueError(f"unknown PDE problem {name!r}; known problems: {', '.join(PROBLEMS)}")
    accepted = parameter_names(key)
    unknown = sorted(set(parameters) - set(accepted))
    if unknown:
        raise ValueError(
            f"{key} has no parameter(s) {unknown}; its parameters are: {', '.join(accepted)}"
        )
    return PROBLEMS[key](**parameters)


def parameter_names(name: str) -> tuple[str, ...]:
    """The constructor parameters of the problem called ``name``."""
    signature = inspect.signature(PROBLEMS[name].__init__)
    return tuple(p for p in signature.parameters if p != "self")
