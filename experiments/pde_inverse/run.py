"""Forward and inverse PDE problems from sparse noise-free sensors, every guidance method
on one trained prior, scored with the published protocol.

Protocol (DiffusionPDE / FunDPS): ``sensors_per_channel`` random nodes of the observed
channel (500 at 128², about 3 %; 123 at 64²). Config keys: ``problem`` and
``problem_parameters`` (passed to ``pdes.get``, e.g. ``{"convention": "diffusionpde"}``);
``tasks``, each ``{"observe": var, "score": var}`` or the observed name alone (the scored
variable is then the problem's other one): *forward* observes the coefficient or source
(Darcy ``a``, Poisson / Helmholtz ``f``) and scores the solution ``u``, *inverse* the
reverse; ``thresholds`` (default Darcy ``a`` at 7.5 between 3 and 12): variables also scored
by the pixel error rate of the thresholded mean; ``exclude_fixed_nodes``: draw no sensor
where ``Problem.fixed_nodes`` says a boundary condition fixes the observed variable. A
method with ``"pde": true`` is guided by the configured problem's residual. Scores per
test case, averaged: relative L2 of the ensemble mean of every variable, the error rate of
thresholded variables (``score`` is the error rate for a thresholded scored variable, its
relative L2 otherwise), the ensemble CRPS and spread/skill ratio of the scored variable,
NFE and backward passes per member, seconds per member. MMPS needs a noise std: it is told
``assumed_noise_fraction`` times the observed variable's spread (the sensors are
noise-free).

Data keys: ``frames`` (``{"name": [trajectory_variable, time_index]}``) builds sample
variables from frames of a trajectory (Navier–Stokes ``w0``/``wT`` from ``vorticity``);
only the prior's variables are kept after that, so a trajectory with a ``time`` dim never
reaches the sensors or the scores. ``fluid_mask`` names a variable that is nonzero on
solid nodes (cylinder flow ``solid``): sensors are drawn only in the fluid and every
relative L2 is taken over fluid nodes only. ``generate`` holds options of
``Problem.generate`` (``workers``, ``device``, ...).

Run: ``python experiments/pde_inverse/run.py --config experiments/pde_inverse/quick.json
--out runs/pde_inverse_quick`` (data and the trained prior are cached in ``--out``; a rerun
resumes). Results go to ``--results`` (default
``experiments/pde_inverse/results/<config>.jsonl``), one JSON line per task x method x
steps, appended as each finishes, so a run cut short keeps what it did. ``--device cuda``
trains and samples on a GPU (overriding the config's ``train.device``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sciml_diffusion import pdes
from sciml_diffusion.diffusion import Prior, train_prior
from sciml_diffusion.fields import FieldDataset, Observations
from sciml_diffusion.inverse import reconstruct
from sciml_diffusion.inverse.report import score_reconstruction
from sciml_diffusion.metrics import crps_ensemble, spread_skill

HERE = Path(__file__).resolve().parent


def problem_of(config: dict) -> pdes.Problem:
    """The configured problem, built with ``problem_parameters`` (default: the recipe)."""
    return pdes.get(config["problem"], **config.get("problem_parameters", {}))


def tasks_of(config: dict, problem: pdes.Problem, names=None) -> dict[str, tuple[str, str]]:
    """``task -> (observed, scored)`` variables.

    A task maps to ``{"observe": name, "score": name}``, or to the observed name alone: the
    scored variable is then the other variable (Darcy: ``a`` <-> ``u``). ``names``: the
    variables a task may use (default the prior's, ``train.variables``, else the problem's).
    """
    names = list(names or config["train"].get("variables") or [])
    names = names or [v.name for v in problem.variables]
    tasks = {}
    for task, spec in config["tasks"].items():
        if isinstance(spec, str):
            others = [n for n in names if n != spec]
            if len(others) != 1:
                raise ValueError(
                    f"task {task!r}: give {{'observe': ..., 'score': ...}} for {problem.name}"
                    f" (variables {names})"
                )
            spec = {"observe": spec, "score": others[0]}
        for key in ("observe", "score"):
            if spec[key] not in names:
                raise ValueError(f"task {task!r}: {spec[key]!r} is not one of {names}")
        tasks[task] = spec["observe"], spec["score"]
    return tasks


def thresholds_of(config: dict) -> dict:
    """Variables scored also by the thresholded error rate (Darcy ``a`` at 7.5 by default)."""
    default = {"a": (7.5, 3.0, 12.0)} if config["problem"] == "darcy" else {}
    return {k: tuple(v) for k, v in config.get("thresholds", default).items()}


def data(config: dict, out: Path) -> tuple[FieldDataset, FieldDataset]:
    """Training and test sets, generated once into ``out`` (only the variables kept)."""
    problem = problem_of(config)
    files = out / "train.nc", out / "test.nc"
    if not files[1].exists():
        n, res, seed = config["n_train"], config["resolution"], config["seed"]
        options = config.get("generate", {})
        for file, count, first in ((files[0], n, seed), (files[1], config["n_test"], seed + n)):
            full = problem.generate(count, res, seed=first, progress=True, **options)
            sample_set(full, config).save(file)
    return FieldDataset.open(files[0]), FieldDataset.open(files[1])


def sample_set(dataset: FieldDataset, config: dict) -> FieldDataset:
    """The prior's variables (and the fluid mask), frames picked out of trajectories.

    ``config["frames"]`` maps a new variable to ``[trajectory_variable, time_index]``:
    ``{"w0": ["vorticity", 0], "wT": ["vorticity", -1]}`` is the Navier–Stokes pair of the
    DiffusionPDE benchmark. The result has no ``time`` dim.
    """
    ds = dataset.xarray.copy()
    for name, (source, index) in config.get("frames", {}).items():
        if source not in ds or "time" not in ds[source].dims:
            raise ValueError(f"frames: {source!r} is not a trajectory of the generated data")
        frame = ds[source].isel(time=int(index))
        ds[name] = frame.drop_vars("time", errors="ignore").assign_attrs(
            ds[source].attrs, frame_of=source, frame_time=float(frame["time"])
        )
    keep = list(config["train"]["variables"])
    if config.get("fluid_mask"):
        keep.append(config["fluid_mask"])
    return FieldDataset(ds, variables=keep)


def prior(config: dict, train: FieldDataset, out: Path, device=None) -> Prior:
    """The trained prior in ``out/prior`` (trained or resumed first if not done)."""
    run = out / "prior"
    settings = dict(config["train"], **({"device": str(device)} if device else {}))
    done = (run / "checkpoint.pt").exists() and _step(run) >= settings["steps"]
    if not done:
        return train_prior(train, settings, out=run, resume=(run / "checkpoint.pt").exists())
    return Prior.load(run, device=device)


def _step(run: Path) -> int:
    log = run / "log.jsonl"
    if not log.exists():
        return 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return max((line.get("step", 0) for line in lines), default=0)


def evaluate(
    config: dict,
    model: Prior,
    test: FieldDataset,
    name: str,
    path: Path | None = None,
    device=None,
) -> list[dict]:
    """Every task x method x step count; each row is appended to ``path`` when done."""
    problem = problem_of(config)
    names = list(model.variables)
    thresholds = thresholds_of(config)
    fixed = problem.fixed_nodes(test.grid) if config.get("exclude_fixed_nodes") else {}
    fluid = _fluid(test, config)
    observable = FieldDataset(_observable(test, fluid), variables=names)
    rows = []
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    for task, (observed, scored) in tasks_of(config, problem, names).items():
        noise = (
            config["assumed_noise_fraction"]
            * model.normalizer.std[model.variables.index(observed)]
        )
        sensors = _sensors(config, observable, observed, fixed)
        for method, spec in config["methods"].items():
            for steps in spec["steps"]:
                run = dict(
                    members=config["members"],
                    steps=steps,
                    device=device,
                    noise_std=noise,
                    progress=False,
                    pde=problem if spec.get("pde") else None,
                    **spec["options"],
                )
                cases = []
                for i, ds, wall in _reconstructions(model, sensors, method, run, device):
                    truth = {v: test.xarray[v].values[i] for v in names}
                    score = score_reconstruction(ds, truth, thresholds=thresholds)
                    if fluid is not None:
                        _fluid_scores(score, ds, truth, fluid[i])
                    cases.append((score, {**ds.attrs, "wall": wall}))
                row = _summary(
                    name, task, method, steps, observed, scored, cases, config["members"]
                )
                row["metric"] = "error_rate" if scored in thresholds else "relative_l2"
                row["score"] = row[f"{row['metric']}_{scored}"]
                row["scored_on"] = "fluid nodes" if fluid is not None else "all nodes"
                print(json.dumps(row), flush=True)
                rows.append(row)
                if path is not None:
                    with path.open("a") as file:
                        file.write(json.dumps(row) + "\n")
    return rows


def _sensors(config: dict, observable: FieldDataset, observed: str, fixed: dict) -> list:
    """Sensor readings per test case: ``[Observations]``, or one holding every case.

    By default case ``i`` draws its own nodes (seed ``seed + i``). With
    ``"shared_sensors": true`` every case is read at the same nodes (seed ``seed``), as in
    the DiffusionPDE / FunDPS scripts, and the observations hold all cases (values
    ``(cases, S, 1)``) so that all members of all cases are sampled in one batch.
    """
    count = min(config.get("eval_cases", len(observable)), len(observable))
    shared = bool(config.get("shared_sensors"))
    draws = [
        Observations.per_variable(
            observable,
            index=i,
            count=config["sensors_per_channel"],
            variables=[observed],
            exclude_boundary=bool(np.any(fixed.get(observed, False))),
            seed=config["seed"] + (0 if shared else i),
        )
        for i in range(count)
    ]
    if not shared:
        return draws
    if any(not np.array_equal(d.coords, draws[0].coords) for d in draws):
        raise ValueError("shared_sensors: the cases have different observable nodes")
    values = np.stack([d.values for d in draws])
    return [Observations(draws[0].coords, values, [observed], axes=draws[0].axes)]


def _reconstructions(model: Prior, sensors: list, method: str, run: dict, device):
    """``(case, ensemble, wall seconds per case)`` for every test case."""
    for first, obs in enumerate(sensors):
        start = time.perf_counter()
        ds = reconstruct(model, obs, method, generator=first, **run)
        _synchronize(device)
        wall = time.perf_counter() - start
        if "case" not in ds.dims:
            yield first, ds, wall
            continue
        cases = ds.sizes["case"]
        for c in range(cases):
            one = ds.isel(case=c).assign_attrs(seconds=ds.attrs["seconds"] / cases)
            yield first + c, one, wall / cases


def _fluid(test: FieldDataset, config: dict) -> np.ndarray | None:
    """``(sample, *space)`` bool: nodes that are fluid, or None without ``fluid_mask``."""
    name = config.get("fluid_mask")
    return None if not name else test.xarray[name].values == 0


def _observable(test: FieldDataset, fluid: np.ndarray | None) -> xr.Dataset:
    """The test fields the sensors may read: NaN (no data) on solid nodes."""
    ds = test.xarray.copy()
    if fluid is not None:
        for v in test.variables:
            ds[v] = ds[v].where(fluid)
    return ds


def _fluid_scores(score: dict, ds, truth: dict, fluid: np.ndarray) -> None:
    """Replace the scores in ``score`` by the ones over the fluid nodes only."""
    for v, true in truth.items():
        error = (ds[f"{v}_mean"].values - true)[fluid]
        members = ds[v].values[:, fluid]
        score[v]["relative_l2"] = float(np.linalg.norm(error) / np.linalg.norm(true[fluid]))
        score[v]["crps"] = float(crps_ensemble(members, true[fluid], member_dim=0).mean())
        if members.shape[0] > 1:
            score[v]["spread_skill"] = spread_skill(members, true[fluid])["ratio"]


def _synchronize(device) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _summary(name, task, method, steps, observed, scored, cases, members) -> dict:
    def mean(key, var=scored):
        return float(np.mean([c[0][var].get(key, np.nan) for c in cases]))

    row = {
        "config": name,
        "task": task,
        "method": method,
        "steps": steps,
        "observed": observed,
        "scored": scored,
    }
    for var in cases[0][0]:
        row[f"relative_l2_{var}"] = mean("relative_l2", var)
        if "error_rate" in cases[0][0][var]:
            row[f"error_rate_{var}"] = mean("error_rate", var)
    return row | {
        "crps": mean("crps"),
        "spread_skill": mean("spread_skill"),
        "nfe": cases[0][1]["nfe"],
        "vjp": cases[0][1]["vjp"],
        "seconds_per_member": float(np.mean([c[1]["seconds"] for c in cases])) / members,
        "wall_seconds_per_member": float(np.mean([c[1]["wall"] for c in cases])) / members,
        "cases": len(cases),
        "members": members,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE / "quick.json"))
    parser.add_argument("--out", default="runs/pde_inverse_quick", help="data + prior cache")
    parser.add_argument("--results", help="JSON lines file (default results/<config>.jsonl)")
    parser.add_argument("--device", help="cpu, cuda, ... (default the config's train.device)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = json.loads(Path(args.config).read_text())
    name = Path(args.config).stem
    device = torch.device(args.device or config["train"].get("device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "error: --device cuda but no CUDA device is visible; use --device cpu\n")
    results = Path(args.results) if args.results else HERE / "results" / f"{name}.jsonl"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train, test = data(config, out)
    model = prior(config, train, out, device)
    ready = {"prior_ready_seconds": time.perf_counter() - start, "device": str(device)}
    print(json.dumps(ready | _last_validation(out / "prior")), flush=True)
    evaluate(config, model, test, name, results, device)


def _last_validation(run: Path) -> dict:
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line]
    checked = [line for line in lines if "val_loss" in line]
    return {"step": checked[-1]["step"], "val_loss": checked[-1]["val_loss"]} if checked else {}


if __name__ == "__main__":
    main()
