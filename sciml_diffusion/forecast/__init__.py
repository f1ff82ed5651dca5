"""Probabilistic spatiotemporal forecasting on xarray data.

One interface for every method::

    from sciml_diffusion import forecast
    model = forecast.fit(train, val, {"method": "dyffusion", "context": 2, "horizon": 4})
    ens = model.forecast(initial, lead_times=[1, 2, 4, 8], members=16)  # xarray.Dataset

Methods: ``"diffusion"`` (:class:`GaussianDiffusionForecaster`, the baseline),
``"dyffusion"`` (:class:`DYffusion`), ``"rolling"`` (:class:`RollingDiffusion`);
references :func:`persistence` and :func:`climatology`. See ``docs/forecast.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

from sciml_diffusion import distributed
from sciml_diffusion.data_parallel import decided_on_main
from sciml_diffusion.diffusion.prior import NORMALIZER_FILE
from sciml_diffusion.fields import Normalizer
from sciml_diffusion.forecast.base import (
    FORMAT,
    Forecaster,
    check_resume,
    prepare_training,
    read_forecast_config,
)
from sciml_diffusion.forecast.config import METHOD_NAMES, ForecastConfig
from sciml_diffusion.forecast.dyffusion import DYffusion, cold_sample, interpolation_times
from sciml_diffusion.forecast.gaussian import GaussianDiffusionForecaster
from sciml_diffusion.forecast.references import climatology, persistence
from sciml_diffusion.forecast.rolling import (
    RollingDiffusion,
    init_local_times,
    local_sigmas,
    rolling_local_times,
)
from sciml_diffusion.forecast.windows import Windows, split_time

__all__ = [
    "FORMAT",
    "METHODS",
    "DYffusion",
    "ForecastConfig",
    "Forecaster",
    "GaussianDiffusionForecaster",
    "RollingDiffusion",
    "Windows",
    "climatology",
    "cold_sample",
    "fit",
    "init_local_times",
    "interpolation_times",
    "load",
    "local_sigmas",
    "persistence",
    "rolling_local_times",
    "split_time",
]

#: forecaster classes by method name
METHODS: dict[str, type[Forecaster]] = {
    "diffusion": GaussianDiffusionForecaster,
    "dyffusion": DYffusion,
    "rolling": RollingDiffusion,
}
assert tuple(METHODS) == METHOD_NAMES


def fit(
    train,
    val=None,
    config: ForecastConfig | dict | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Forecaster:
    """Train a forecaster on trajectories.

    Parameters
    ----------
    train : FieldDataset or xarray.Dataset
        With a ``time`` dim of at least ``context + horizon`` steps (and optionally
        ``sample``: independent trajectories). NaN points are left out of every loss.
    val : FieldDataset or xarray.Dataset, optional
        Validation trajectories; by default the last ``val_fraction`` of ``train``'s time
        axis (or trajectories, ``split_by="sample"``) is held out before windows are cut.
    config : ForecastConfig or dict
    out : path, optional
        Run directory (config, normaliser, one checkpoint folder per stage); every stage of
        a method (DYffusion: interpolator then forecaster) is trained in sequence into it.
    resume : bool
        Continue the run in ``out``: finished stages are loaded, the others resumed.

    Returns
    -------
    Forecaster
        With the EMA weights, ready to :meth:`~Forecaster.forecast`.
    """
    config = _as_config(config)
    train, val = prepare_training(train, val, config)
    out = Path(out) if out is not None else None
    run = decided_on_main(check_resume, out, config, resume) if out is not None else None
    cls = METHODS[config.method]
    if run is not None:
        model = cls.from_run(run, Normalizer.load(out / NORMALIZER_FILE))
        model.config = config
        if model.grid != train.grid:
            raise ValueError(
                f"the data's grid {train.grid} differs from the run's {model.grid}; resume "
                "with the same data"
            )
    else:
        model = cls.create(train, config)
        if out is not None and distributed.is_main():  # under torchrun, rank 0 writes
            model.write_run(out)
    return model.train(train, val, out, resume=resume, progress=progress)


def load(path: str | os.PathLike, device=None, bf16=False, compile=False) -> Forecaster:
    """A trained forecaster from its run directory.

    ``bf16`` (bfloat16 autocast around each network call, CUDA only) and ``compile``
    (``torch.compile`` of the networks) choose the fast paths of its forecasts
    (:meth:`Forecaster.accelerate`); both off by default.
    """
    path = Path(path)
    run = read_forecast_config(path)
    if run.get("method") not in METHODS:
        raise ValueError(f"{path} holds an unknown forecast method {run.get('method')!r}")
    normalizer = Normalizer.load(path / NORMALIZER_FILE)
    model = METHODS[run["method"]].from_run(run, normalizer)
    return model.load_weights(path, device).accelerate(bf16=bf16, compile=compile)


def _as_config(config) -> ForecastConfig:
    if config is None:
        config = ForecastConfig()
    elif isinstance(config, dict):
        config = ForecastConfig.from_dict(config)
    return config.validate()
