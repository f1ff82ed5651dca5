"""Bayesian experimental design: where to put the next sensors, on the diffusion posterior.

- :func:`suggest_sensors`: ``k`` new sensors given the ones placed, by ``eig`` (greedy
  expected information gain), ``greedy``, ``variance`` or ``random``;
- :func:`candidate_sensors`: the admissible readings (grid nodes, a sensor file, a mask);
- :func:`ensemble_eig`, :func:`gaussian_eig`: the expected information gain of a batch,
  from an ensemble (Gaussian, PCE lower bound, nested-MC upper bound) or in closed form;
- :func:`select`: the selection with square-root ensemble Kalman re-conditioning;
- :func:`plot_design`: a map of the criterion and the picks.

See ``docs/inverse.md`` (section "Where to put the next sensors").
"""

from sciml_diffusion.inverse.design.candidates import (
    Candidates,
    candidate_sensors,
    interior_mask,
)
from sciml_diffusion.inverse.design.eig import ESTIMATORS, ensemble_eig, gaussian_eig
from sciml_diffusion.inverse.design.plot import plot_design
from sciml_diffusion.inverse.design.selection import (
    CRITERIA,
    min_members,
    select,
    square_root_update,
)
from sciml_diffusion.inverse.design.suggest import (
    ProposedSensors,
    extend_observations,
    suggest_sensors,
)

__all__ = [
    "CRITERIA",
    "Candidates",
    "ESTIMATORS",
    "ProposedSensors",
    "candidate_sensors",
    "ensemble_eig",
    "extend_observations",
    "gaussian_eig",
    "interior_mask",
    "min_members",
    "plot_design",
    "select",
    "square_root_update",
    "suggest_sensors",
]
