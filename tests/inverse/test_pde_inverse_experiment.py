"""The PDE-inverse experiment (``experiments/pde_inverse/run.py``): its configs name valid
settings, and the Navier–Stokes (frames of a trajectory) and cylinder-flow (sensors and
scores in the fluid only) paths run end to end at a tiny size."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sciml_diffusion.diffusion import TrainConfig
from sciml_diffusion.fields import FieldDataset, Observations
from sciml_diffusion.inverse import METHODS

FOLDER = Path(__file__).resolve().parents[2] / "experiments" / "pde_inverse"
CONFIGS = sorted(p.name for p in FOLDER.glob("*.json"))


def _runner():
    spec = importlib.util.spec_from_file_location("pde_inverse_run", FOLDER / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = _runner()


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_valid(name):
    config = json.loads((FOLDER / name).read_text())
    problem = run.problem_of(config)
    TrainConfig.from_dict(config["train"]).validate()
    variables = config["train"]["variables"]
    for observed, scored in run.tasks_of(config, problem).values():
        assert {observed, scored} <= set(variables) and observed != scored
    assert set(config["methods"]) <= set(METHODS)
    names = {v.name for v in problem.variables}
    assert {source for source, _ in config.get("frames", {}).values()} <= names
    assert config.get("fluid_mask", "solid") in names | {"solid"}
    if config["problem"] == "navier_stokes":  # the w0 -> wT pair has no local residual
        assert not any(m.get("pde") for m in config["methods"].values())


def _tiny(name: str) -> dict:
    config = json.loads((FOLDER / name).read_text())
    config.update(resolution=16, n_train=6, n_test=2, eval_cases=1, members=2)
    config["sensors_per_channel"] = 8
    config["train"].update(
        steps=2, width=8, n_modes=4, batch_size=3, warmup=1, val_every=2, val_samples=2
    )
    config["train"].update(checkpoint_every=2)
    config["methods"] = {"dps": {"steps": [2], "options": {}}}
    return config


def _evaluate(config: dict, tmp_path: Path, keep=None):
    train, test = run.data(config, tmp_path)
    model = run.prior(config, train, tmp_path)
    if keep is not None:
        keep["model"] = model
    results = tmp_path / "rows.jsonl"
    rows = run.evaluate(config, model, test, "tiny", results)
    written = [json.loads(line) for line in results.read_text().splitlines()]
    assert written == json.loads(json.dumps(rows))  # appended row by row, nothing lost
    assert len(rows) == len(config["tasks"])
    return train, test, rows


def test_navier_stokes_pair_from_trajectory(tmp_path):
    config = _tiny("quick_navier_stokes.json")
    kept = {}
    train, test, rows = _evaluate(config, tmp_path, kept)
    assert train.variables == ("w0", "wT") and not train.has_time
    full = run.problem_of(config).generate(2, 16, seed=config["seed"] + config["n_train"])
    vorticity = full.xarray["vorticity"].values
    np.testing.assert_allclose(test.xarray["w0"].values, vorticity[:, 0], rtol=1e-6)
    np.testing.assert_allclose(test.xarray["wT"].values, vorticity[:, -1], rtol=1e-6)
    assert not np.allclose(vorticity[:, 0], vorticity[:, -1])
    assert {(r["observed"], r["scored"]) for r in rows} == {("w0", "wT"), ("wT", "w0")}
    assert all(np.isfinite(r["score"]) and r["scored_on"] == "all nodes" for r in rows)

    # shared sensors: all cases in one batch give each case's own reconstruction
    config.update(shared_sensors=True, eval_cases=2)
    (sensors,) = run._sensors(config, FieldDataset(test, variables=["w0", "wT"]), "w0", {})
    options = dict(members=2, steps=2, progress=False, noise_std=0.01)
    batched = list(run._reconstructions(kept["model"], [sensors], "dps", options, None))
    assert [case for case, _, _ in batched] == [0, 1]
    for case, ds, _ in batched:
        alone = Observations(sensors.coords, sensors.values[case], ["w0"], axes=sensors.axes)
        single = run.reconstruct(kept["model"], alone, "dps", generator=case, **options)
        np.testing.assert_allclose(ds["wT"].values, single["wT"].values, rtol=1e-4, atol=1e-5)


def test_cylinder_sensors_and_scores_in_the_fluid(tmp_path):
    config = _tiny("quick_cylinder.json")
    train, test, rows = _evaluate(config, tmp_path)
    assert set(train.variables) == {"speed_in", "speed_out", "solid"}
    assert all(r["scored_on"] == "fluid nodes" and np.isfinite(r["score"]) for r in rows)
    fluid = run._fluid(test, config)
    observable = run._observable(test, fluid)
    obs = Observations.per_variable(
        FieldDataset(observable, variables=["speed_in"]), count=40, seed=0
    )
    grid = test.grid
    iy = np.searchsorted(grid.coords[0], obs.coords[:, 0])
    ix = np.searchsorted(grid.coords[1], obs.coords[:, 1])
    assert fluid[0][iy, ix].all()  # no sensor on a wall or in the cylinder


def test_fluid_scores_ignore_solid_nodes():
    fluid = np.ones((4, 4), bool)
    fluid[1:3, 1:3] = False
    truth = np.arange(16.0).reshape(4, 4) + 1
    members = np.stack([truth, truth])
    members[:, ~fluid] += 100.0  # wrong only inside the solid
    ds = xr.Dataset(
        {"s": (("member", "y", "x"), members), "s_mean": (("y", "x"), members.mean(0))}
    )
    score = {"s": {}}
    with np.errstate(invalid="ignore"):  # zero spread and zero error: ratio 0/0
        run._fluid_scores(score, ds, {"s": truth}, fluid)
    assert score["s"]["relative_l2"] == 0.0 and score["s"]["crps"] == 0.0
    members[:, 0, 0] += 1.0
    ds["s"].values[:], ds["s_mean"].values[:] = members, members.mean(0)
    run._fluid_scores(score, ds, {"s": truth}, fluid)
    expected = 1.0 / np.linalg.norm(truth[fluid])
    assert score["s"]["relative_l2"] == pytest.approx(expected)


def test_cost_at_matched_error_interpolates_in_log_cost():
    spec = importlib.util.spec_from_file_location("pde_inverse_nfe", FOLDER / "nfe.py")
    nfe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nfe)
    costs, scores = np.array([10.0, 100.0, 1000.0]), np.array([0.5, 0.1, 0.05])
    assert nfe.cost_to_reach(costs, scores, 0.3) == (pytest.approx(10**1.5), "=")
    assert nfe.cost_to_reach(costs, scores, 0.6) == (10.0, "<=")
    assert np.isnan(nfe.cost_to_reach(costs, scores, 0.01)[0])
    dip = np.array([0.05, 0.5, 0.1])  # a cheap lucky point does not count
    assert nfe.cost_to_reach(costs, dip, 0.3)[0] == pytest.approx(10**2.5)
    rows = [
        {"task": "t", "method": m, "nfe": c, "vjp": 0, "score": s, "steps": c}
        for m, pts in {"best": [(10, 0.5), (100, 0.1)], "ref": [(50, 0.9), (400, 0.3)]}.items()
        for c, s in pts
    ]
    rows = [r | {"passes": r["nfe"]} for r in rows]
    (ratio,) = nfe.matched_ratios(rows, "t", "best", ["ref"], "nfe")
    assert ratio["reference_cost"] == 400 and ratio["ratio"] == pytest.approx(10**1.5 / 400)
