"""`sciml-diffusion data make`: single problems, recipes, bad input, interrupted runs."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from sciml_diffusion import __version__, pdes
from sciml_diffusion.cli import main
from sciml_diffusion.cli.data import PROBLEM_NAMES
from sciml_diffusion.fields import FieldDataset
from sciml_diffusion.pdes.recipes import load_recipe

DATASETS = Path(__file__).resolve().parents[2] / "datasets"


def test_problem_names_match_the_registry():
    assert PROBLEM_NAMES == pdes.names()


def test_make_darcy_writes_the_recipe_attributes(tmp_path):
    out = tmp_path / "darcy.nc"
    argv = ["data", "make", "darcy", "--samples", "3", "--resolution", "17", "--seed", "5"]
    assert main([*argv, "--param", "tau=4", "--out", str(out), "--no-progress"]) == 0
    data = FieldDataset.open(out)
    ds = data.xarray
    assert data.to_tensor(["a", "u"]).shape == (3, 2, 17, 17)
    assert ds.attrs["problem"] == "darcy" and ds.attrs["seed"] == 5
    assert ds.attrs["param_tau"] == 4.0 and ds.attrs["sciml_diffusion_version"] == __version__
    assert ds["x"].attrs["axis"] == "X" and float(ds["x"][-1]) == 1.0
    expected = pdes.get("darcy", tau=4).generate(3, 17, seed=5).xarray
    np.testing.assert_array_equal(ds["u"].values, expected["u"].values)


def test_make_navier_stokes_with_time_options(tmp_path):
    out = tmp_path / "ns.nc"
    argv = ["data", "make", "navier_stokes", "--samples", "2", "--resolution", "16"]
    options = ["--steps", "4", "--dt", "0.05", "--viscosity", "0.01", "--final-time", "0.2"]
    assert main([*argv, *options, "--batch-size", "1", "--out", str(out), "--no-progress"]) == 0
    ds = FieldDataset.open(out).xarray
    assert ds["vorticity"].shape == (2, 5, 16, 16)
    np.testing.assert_allclose(ds["time"].values, [0.0, 0.05, 0.1, 0.15, 0.2])
    assert ds.attrs["param_viscosity"] == 0.01


def test_make_from_a_recipe(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "problem: poisson\nparameters: {tau: 3.0}\nseed: 2\n"
        "sizes:\n  quick: {resolution: 9, splits: {train: 3, test: 2}}\n"
        "  full: {resolution: 65, splits: {train: 100, test: 10}}\n"
    )
    argv = ["data", "make", "--recipe", str(recipe), "--size", "quick"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    train = FieldDataset.open(tmp_path / "out" / "poisson_quick_train.nc").xarray
    test = FieldDataset.open(tmp_path / "out" / "poisson_quick_test.nc").xarray
    assert train.sizes["sample"] == 3 and test.sizes["sample"] == 2
    assert train.attrs["seed"] == 2 and test.attrs["seed"] == 2 + 100_000_000
    assert not np.allclose(train["f"].values[:2], test["f"].values)


@pytest.mark.parametrize("path", sorted(DATASETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_recipes_are_valid(path):
    recipe = load_recipe(path)
    assert recipe.problem in pdes.names()
    assert {"quick", "full"} <= set(recipe.sizes)
    full = recipe.jobs("full")
    assert [job.split for job in full] == ["train", "test"]
    if recipe.problem in ("darcy", "poisson", "helmholtz", "navier_stokes"):
        assert full[0].resolution == 128 and full[0].samples >= 10_000 and full[1].samples == 1000
    for job in [*recipe.jobs("quick"), *full]:
        pdes.get(job.problem, **job.parameters)


def test_all_six_problems_have_a_recipe():
    assert {load_recipe(p).problem for p in DATASETS.glob("*.yaml")} == set(pdes.names())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["data", "make", "heat", "--samples", "1", "--resolution", "9", "--out", "x.nc"],
            "unknown PDE problem 'heat'; known problems: darcy, poisson",
        ),
        (
            [
                "data",
                "make",
                "burgers",
                "--samples",
                "1",
                "--resolution",
                "32",
                "--out",
                "x.nc",
                "--viscosity",
                "0",
            ],
            "viscosity must be positive",
        ),
        (
            [
                "data",
                "make",
                "burgers",
                "--samples",
                "1",
                "--resolution",
                "32",
                "--out",
                "x.nc",
                "--dt",
                "-1",
            ],
            "time step dt must be positive",
        ),
        (
            ["data", "make", "darcy", "--samples", "1", "--resolution", "3", "--out", "x.nc"],
            "too small for the five-point scheme",
        ),
        (
            [
                "data",
                "make",
                "burgers",
                "--samples",
                "1",
                "--resolution",
                "512",
                "--out",
                "x.nc",
                "--dt",
                "0.5",
                "--steps",
                "1",
                "--final-time",
                "0.5",
            ],
            "violates the CFL condition",
        ),
        (["data", "make", "darcy", "--samples", "1", "--resolution", "9"], "needs --out"),
        (
            [
                "data",
                "make",
                "darcy",
                "--samples",
                "1",
                "--resolution",
                "9",
                "--out",
                "x.nc",
                "--reynolds",
                "10",
            ],
            "darcy has no parameter(s) ['reynolds']",
        ),
        (["data", "make", "--recipe", "missing.yaml"], "no such recipe: missing.yaml"),
        (["data", "make", "--recipe", "r.yaml", "--seed", "3"], "or --recipe (which sets them)"),
        (
            ["data", "make", "--recipe", str(DATASETS / "darcy.yaml"), "--size", "huge"],
            "has no size 'huge'; sizes: quick, full",
        ),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.nc").exists()


def test_existing_file_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "d.nc"
    argv = ["data", "make", "darcy", "--samples", "1", "--resolution", "9", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert main([*argv, "--no-progress"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--no-progress", "--overwrite"]) == 0


def test_interrupted_generation_leaves_no_file(tmp_path, monkeypatch):
    from sciml_diffusion.pdes import elliptic

    calls = []

    def interrupt_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return solve(*args, **kwargs)

    solve = elliptic.solve_dirichlet
    monkeypatch.setattr(elliptic, "solve_dirichlet", interrupt_on_third)
    out = tmp_path / "d.nc"
    argv = ["data", "make", "darcy", "--samples", "5", "--resolution", "9", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 130
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    def write_half_then_stop(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF\r\n\x1a\n partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_netcdf", write_half_then_stop)
    out = tmp_path / "d.nc"
    argv = ["data", "make", "darcy", "--samples", "2", "--resolution", "9", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 130
    assert list(tmp_path.iterdir()) == []


def test_device_options_are_refused_for_steady_problems(tmp_path, capsys):
    argv = ["data", "make", "darcy", "--samples", "1", "--resolution", "9", "--out"]
    assert main([*argv, str(tmp_path / "d.nc"), "--device", "cpu", "--no-progress"]) == 2
    assert "apply to time-dependent problems" in capsys.readouterr().err
