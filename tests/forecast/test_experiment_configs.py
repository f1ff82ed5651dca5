"""The forecasting experiment's configs name valid settings (a typo fails here, not an hour
into a run)."""

import json
from pathlib import Path

import pytest

from sciml_diffusion import pdes
from sciml_diffusion.forecast import ForecastConfig

FOLDER = Path(__file__).resolve().parents[2] / "experiments" / "forecast_navier_stokes"


@pytest.mark.parametrize(
    "name",
    [
        "quick.json",
        "quick_ns.json",
        "quick_cylinder.json",
        "quick_cylinder_long.json",
        "full.json",
    ],
)
def test_experiment_config_is_valid(name):
    config = json.loads((FOLDER / name).read_text())
    problem = pdes.get(config["problem"], **config["problem_parameters"])
    names = {v.name for v in problem.variables}
    assert set(config.get("variables", ["vorticity"])) <= names
    if "solid" in names:  # solid cells must be masked out of every loss and score
        assert config.get("mask") == "solid"
    frames = config["problem_parameters"]["steps"] + 1 - config["spinup_frames"]
    context = config["model"]["context"]
    assert max(config["initial_times"]) + max(config["lead_times"]) < frames
    assert min(config["initial_times"]) >= context - 1
    for method in config["methods"]:
        settings = dict(config["model"], method=method, steps=config["steps"][method])
        ForecastConfig.from_dict(settings).validate()
