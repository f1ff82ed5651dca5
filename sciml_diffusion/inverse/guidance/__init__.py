"""Guidance methods for posterior sampling, one interface (see :mod:`.base`)."""

from sciml_diffusion.inverse.guidance.base import Guidance, PDETerm
from sciml_diffusion.inverse.guidance.diffusionpde import DiffusionPDE
from sciml_diffusion.inverse.guidance.dps import DPS
from sciml_diffusion.inverse.guidance.fundps import FunDPS
from sciml_diffusion.inverse.guidance.mmps import MMPS, conjugate_gradient, gmres

__all__ = [
    "DPS",
    "DiffusionPDE",
    "FunDPS",
    "Guidance",
    "MMPS",
    "PDETerm",
    "conjugate_gradient",
    "gmres",
]
