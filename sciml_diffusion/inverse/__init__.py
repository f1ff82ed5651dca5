"""Posterior sampling for inverse problems: sparse sensors in, a calibrated ensemble out.

- :class:`Measurement`, :func:`sensor_measurement`: the observation operator on the
  prior's normalised fields (point sensors per variable, Gaussian noise, or any
  differentiable ``A``);
- guidance methods with one interface, accepted by every sampler: :class:`DPS`,
  :class:`FunDPS` (joint observation + PDE guidance in function space),
  :class:`DiffusionPDE` (the published baseline schedule) and :class:`MMPS`
  (covariance-aware, GMRES or CG);
- :func:`reconstruct`: the ensemble as an ``xarray.Dataset``;
- :func:`gaussian_posterior`: the exact posterior of a
  :class:`~sciml_diffusion.diffusion.GaussianPrior`, the reference for calibration.

See ``docs/inverse.md``.
"""

from sciml_diffusion.diffusion.gaussian import GaussianPrior
from sciml_diffusion.inverse.gaussian import gaussian_posterior
from sciml_diffusion.inverse.guidance import DPS, MMPS, DiffusionPDE, FunDPS, Guidance, PDETerm
from sciml_diffusion.inverse.operators import Measurement, sensor_measurement
from sciml_diffusion.inverse.reconstruct import METHODS, build_guidance, reconstruct

__all__ = [
    "DPS",
    "DiffusionPDE",
    "FunDPS",
    "GaussianPrior",
    "Guidance",
    "METHODS",
    "MMPS",
    "Measurement",
    "PDETerm",
    "build_guidance",
    "gaussian_posterior",
    "reconstruct",
    "sensor_measurement",
]
