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

Run: ``python experiments/pde_inverse/run.py --config experiments/pde_inverse/quick.json
--out runs/pde_inverse_quick`` (data and the trained prior are cached in ``--out``; a rerun
resumes). Writes ``experiments/pde_inverse/results/<config>.jsonl`` row by row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sciml_diffusion import pdes
from sciml_diffusion.diffusion import Prior, train_prior
from sciml_diffusion.fields import FieldDataset, Observations
from sciml_diffusion.inverse import reconstruct
from sciml_diffusion.inverse.report import score_reconstruction

HERE = Path(__file__).resolve().parent


def problem_of(config: dict) -> pdes.Problem:
    """The configured problem, built with ``problem_parameters`` (default: the recipe)."""
    return pdes.get(config["problem"], **config.get("problem_parameters", {}))


def tasks_of(config: dict, problem: pdes.Problem) -> dict[str, tuple[str, str]]:
    """``task -> (observed, scored)`` variables.

    A task maps to ``{"observe": name, "score": name}``, or to the observed name alone: the
    scored variable is then the problem's other variable (Darcy: ``a`` <-> ``u``).
    """
    names = [v.name for v in problem.variables]
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
    problem = problem_of(config)
    files = out / "train.nc", out / "test.nc"
    if not files[0].exists():
        n, res, seed = config["n_train"], config["resolution"], config["seed"]
        problem.generate(n, res, seed=seed, progress=True).save(files[0])
        problem.generate(config["n_test"], res, seed=seed + n, progress=True).save(files[1])
    return FieldDataset.open(files[0]), FieldDataset.open(files[1])


def prior(config: dict, train: FieldDataset, out: Path) -> Prior:
    run = out / "prior"
    done = (run / "checkpoint.pt").exists() and _step(run) >= config["train"]["steps"]
    if not done:
        return train_prior(
            train, config["train"], out=run, resume=(run / "checkpoint.pt").exists()
        )
    return Prior.load(run)


def _step(run: Path) -> int:
    log = run / "log.jsonl"
    if not log.exists():
        return 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return max((line.get("step", 0) for line in lines), default=0)


def evaluate(
    config: dict, model: Prior, test: FieldDataset, name: str, path: Path | None = None
) -> list[dict]:
    """Every task x method x step count; rows are (re)written to ``path`` as they come."""
    problem = problem_of(config)
    names = [v.name for v in problem.variables]
    thresholds = thresholds_of(config)
    fixed = problem.fixed_nodes(test.grid) if config.get("exclude_fixed_nodes") else {}
    rows = []
    for task, (observed, scored) in tasks_of(config, problem).items():
        noise = (
            config["assumed_noise_fraction"]
            * model.normalizer.std[model.variables.index(observed)]
        )
        for method, spec in config["methods"].items():
            for steps in spec["steps"]:
                cases = []
                for i in range(min(config.get("eval_cases", len(test)), len(test))):
                    obs = Observations.per_variable(
                        test,
                        index=i,
                        count=config["sensors_per_channel"],
                        variables=[observed],
                        exclude_boundary=bool(np.any(fixed.get(observed, False))),
                        seed=config["seed"] + i,
                    )
                    ds = reconstruct(
                        model,
                        obs,
                        method,
                        members=config["members"],
                        steps=steps,
                        generator=i,
                        noise_std=noise,
                        progress=False,
                        pde=problem if spec.get("pde") else None,
                        **spec["options"],
                    )
                    truth = {v: test.xarray[v].values[i] for v in names}
                    score = score_reconstruction(ds, truth, thresholds=thresholds)
                    cases.append((score, ds.attrs))
                row = _summary(
                    name, task, method, steps, observed, scored, cases, config["members"]
                )
                row["metric"] = "error_rate" if scored in thresholds else "relative_l2"
                row["score"] = row[f"{row['metric']}_{scored}"]
                print(json.dumps(row), flush=True)
                rows.append(row)
                if path is not None:
                    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


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
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE / "quick.json"))
    parser.add_argument("--out", default="runs/pde_inverse_quick")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = json.loads(Path(args.config).read_text())
    name = Path(args.config).stem
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train, test = data(config, out)
    model = prior(config, train, out)
    print(json.dumps({"prior_ready_seconds": time.perf_counter() - start}), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    evaluate(config, model, test, name, HERE / "results" / f"{name}.jsonl")


if __name__ == "__main__":
    main()
