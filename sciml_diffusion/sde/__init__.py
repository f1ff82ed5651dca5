"""Latent SDEs for noisy, irregular time series, trained by SDE matching or through torchsde.

- :mod:`~sciml_diffusion.sde.systems`: stochastic Lorenz, Ornstein-Uhlenbeck, double well.
- :mod:`~sciml_diffusion.sde.series`: observed sequences (irregular times, missing values).
- :mod:`~sciml_diffusion.sde.latent`: :class:`LatentSDE` (prior, decoder, encoder).
- :mod:`~sciml_diffusion.sde.matching`: the SDE-matching loss (Bartosh et al. 2025).
- :mod:`~sciml_diffusion.sde.baselines`: adjoint and backprop NELBOs through torchsde.
- :mod:`~sciml_diffusion.sde.evaluate`: NELBO, forecast, interpolation, OU parameters.
- :mod:`~sciml_diffusion.sde.train`: training loop, checkpoints, resume.
- :mod:`~sciml_diffusion.sde.covariates`: calendar phase and covariate series of time.
- :mod:`~sciml_diffusion.sde.windows`: calendar times as numbers, records cut into windows.
- :mod:`~sciml_diffusion.sde.scores`: per-lead scores against seasonal references.
- :mod:`~sciml_diffusion.sde.figures`: the forecast fan against the truth.
"""

from sciml_diffusion.sde.baselines import PosteriorSDE, PriorSDE, solver_nelbo
from sciml_diffusion.sde.covariates import SeasonalCovariates, TabulatedCovariates
from sciml_diffusion.sde.evaluate import Evaluation, evaluate, forecast, ou_parameters
from sciml_diffusion.sde.latent import LatentSDE, NELBOTerms
from sciml_diffusion.sde.matching import implied_posterior_drift, sde_matching_loss
from sciml_diffusion.sde.scores import compare_forecasts, forecast_scores
from sciml_diffusion.sde.series import (
    ChannelNormalizer,
    ObservedSeries,
    series_from_dataset,
    series_to_dataset,
)
from sciml_diffusion.sde.systems import (
    SYSTEMS,
    DoubleWell,
    OrnsteinUhlenbeck,
    StochasticLorenz,
    simulate,
    simulate_dataset,
)
from sciml_diffusion.sde.train import METHODS, TrainConfig, Trainer, load_run, save_run, train
from sciml_diffusion.sde.windows import calendar_to_number, cut_windows, record_dataset

__all__ = [
    "SYSTEMS",
    "METHODS",
    "ChannelNormalizer",
    "DoubleWell",
    "Evaluation",
    "LatentSDE",
    "NELBOTerms",
    "ObservedSeries",
    "OrnsteinUhlenbeck",
    "PosteriorSDE",
    "PriorSDE",
    "SeasonalCovariates",
    "StochasticLorenz",
    "TabulatedCovariates",
    "TrainConfig",
    "Trainer",
    "calendar_to_number",
    "compare_forecasts",
    "cut_windows",
    "evaluate",
    "forecast",
    "forecast_scores",
    "implied_posterior_drift",
    "load_run",
    "ou_parameters",
    "record_dataset",
    "save_run",
    "sde_matching_loss",
    "series_from_dataset",
    "series_to_dataset",
    "simulate",
    "simulate_dataset",
    "solver_nelbo",
    "train",
]
