"""Function-space diffusion priors on neural operators.

Noise processes (white, Gaussian random field), EDM preconditioning, a conditional FNO
backbone, the EDM denoising loss, samplers with a guidance hook, training with EMA and
exact resume, and the :class:`Prior` bundle. See ``docs/priors.md``.
"""

from sciml_diffusion.diffusion.exact import GaussianDenoiser
from sciml_diffusion.diffusion.gaussian import GaussianPrior
from sciml_diffusion.diffusion.loss import edm_loss
from sciml_diffusion.diffusion.noise import (
    GRFNoise,
    NoiseProcess,
    StationaryGRFNoise,
    WhiteNoise,
    noise_from_dict,
)
from sciml_diffusion.diffusion.precondition import EDMDenoiser, edm_coefficients
from sciml_diffusion.diffusion.prior import Prior, member_generators
from sciml_diffusion.diffusion.samplers import (
    SAMPLERS,
    dpm_solver_2m,
    euler,
    euler_maruyama,
    heun,
    stochastic,
)
from sciml_diffusion.diffusion.schedules import as_sigmas, edm_sigmas
from sciml_diffusion.diffusion.train import NonFiniteLossError, TrainConfig, train_prior

__all__ = [
    "EDMDenoiser",
    "GRFNoise",
    "GaussianDenoiser",
    "GaussianPrior",
    "NoiseProcess",
    "NonFiniteLossError",
    "Prior",
    "SAMPLERS",
    "StationaryGRFNoise",
    "TrainConfig",
    "WhiteNoise",
    "as_sigmas",
    "dpm_solver_2m",
    "edm_coefficients",
    "edm_loss",
    "edm_sigmas",
    "euler",
    "euler_maruyama",
    "heun",
    "member_generators",
    "noise_from_dict",
    "stochastic",
    "train_prior",
]
