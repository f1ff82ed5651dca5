"""Every user error: one line naming the file or option, exit status 2, no traceback, and
nothing written (the checks run before any work).

Each row: how to prepare the files, the command (``{data}`` a field file, ``{series}`` a
time-series file, ``{prior}`` / ``{sde}`` trained runs, ``{tmp}`` the test folder), and
words the message must contain.
"""

import json

import pytest
import torch

from sciml_diffusion.cli import main


def truncate(path, size):
    data = path.read_bytes()
    path.write_bytes(data[:size])


def prepare_truncated(paths):
    out = paths["tmp"] / "cut.nc"
    out.write_bytes(paths["data"].read_bytes()[:3000])


def prepare_corrupt_model(paths):
    truncate(paths["sde"] / "model.pt", 100)


def prepare_empty_trainer(paths):
    (paths["sde"] / "trainer.pt").write_bytes(b"")


def prepare_configs(paths):
    tmp = paths["tmp"]
    (tmp / "list.json").write_text("[1, 2]")
    (tmp / "ten.json").write_text(json.dumps({"steps": "ten"}))
    (tmp / "ckpt0.json").write_text(json.dumps({"checkpoint_every": 0}))
    (tmp / "val0.json").write_text(json.dumps({"val_every": 0}))
    (tmp / "folder.json").mkdir()
    (tmp / "bad.yaml").write_text("problem: poisson\nsizes: [unclosed\n")
    (tmp / "taken.nc").write_text("precious")
    (tmp / "parent_is_file").write_text("x")


def prepare_lorenz(paths):
    argv = ["sde", "simulate", "lorenz", "--samples", "4", "--times", "5", "--quiet"]
    assert main([*argv, "--out", str(paths["tmp"] / "lorenz.nc")]) == 0


PRIOR_TRAIN = ["prior", "train", "--data", "{data}", "--quiet", "--steps", "2"]
PRIOR_SAMPLE = ["prior", "sample", "--checkpoint", "{prior}", "--samples", "1", "--quiet"]
FORECAST = ["sde", "forecast", "--checkpoint", "{sde}", "--data", "{series}", "--quiet"]
SIMULATE = ["sde", "simulate", "ou", "--quiet"]
SDE_TRAIN = ["sde", "train", "--data", "{series}", "--quiet"]

CASES = {
    # 4. damaged or foreign inputs
    "truncated NetCDF": (
        prepare_truncated,
        ["data", "info", "{tmp}/cut.nc"],
        ["cut.nc", "damaged"],
    ),
    "truncated SDE model.pt": (
        prepare_corrupt_model,
        [*FORECAST, "--horizon", "2", "--out", "{tmp}/new.nc"],
        ["model.pt", "damaged"],
    ),
    "empty SDE trainer.pt": (
        prepare_empty_trainer,
        [*SDE_TRAIN, "--out", "{sde}", "--resume", "--steps", "4"],
        ["trainer.pt", "damaged"],
    ),
    "prior run given to sde forecast": (
        None,
        [
            "sde",
            "forecast",
            "--checkpoint",
            "{prior}",
            "--data",
            "{series}",
            "--horizon",
            "2",
            "--out",
            "{tmp}/new.nc",
        ],
        ["not a latent SDE run"],
    ),  # fmt: skip
    "resume on data with other channels": (
        prepare_lorenz,
        ["sde", "train", "--data", "{tmp}/lorenz.nc", "--out", "{sde}", "--resume", "--quiet"],
        ["3 channels", "trained on 1"],
    ),
    # 4. devices
    "device banana": (
        None,
        [*PRIOR_TRAIN, "--out", "{tmp}/new", "--device", "banana"],
        ["--device", "banana", "not a torch device"],
    ),
    "sample on a device torch does not know": (
        None,
        [*PRIOR_SAMPLE, "--device", "banana", "--out", "{tmp}/new.nc"],
        ["--device", "banana"],
    ),
    # 4. settings
    "config checkpoint_every 0": (
        prepare_configs,
        [*PRIOR_TRAIN, "--out", "{tmp}/new", "--config", "{tmp}/ckpt0.json"],
        ["checkpoint_every must be >= 1"],
    ),
    "config val_every 0": (
        prepare_configs,
        [*PRIOR_TRAIN, "--out", "{tmp}/new", "--config", "{tmp}/val0.json"],
        ["val_every must be >= 1"],
    ),
    "sde --checkpoint-every 0": (
        None,
        [*SDE_TRAIN, "--out", "{tmp}/new", "--checkpoint-every", "0"],
        ["--checkpoint-every", ">= 1"],
    ),
    "prior --checkpoint-every 0": (
        None,
        [*PRIOR_TRAIN, "--out", "{tmp}/new", "--checkpoint-every", "0"],
        ["--checkpoint-every", ">= 1"],
    ),
    "config is a list": (
        prepare_configs,
        [*PRIOR_TRAIN, "--out", "{tmp}/new", "--config", "{tmp}/list.json"],
        ["list.json", "JSON list", "object"],
    ),
    "config is a folder": (
        prepare_configs,
        [*PRIOR_TRAIN, "--out", "{tmp}/new", "--config", "{tmp}/folder.json"],
        ["folder.json", "is a folder"],
    ),
    "config steps ten": (
        prepare_configs,
        ["prior", "train", "--data", "{data}", "--out", "{tmp}/new", "--config", "{tmp}/ten.json"],
        ["steps must be an integer", "'ten'"],
    ),
    "config file missing": (
        None,
        [*PRIOR_TRAIN, "--out", "{tmp}/new", "--config", "{tmp}/nope.json"],
        ["nope.json", "no such file"],
    ),
    "recipe with bad YAML": (
        prepare_configs,
        ["data", "make", "--recipe", "{tmp}/bad.yaml", "--out", "{tmp}/new"],
        ["bad.yaml", "not valid YAML", "line"],
    ),
    "forecast dt 0": (
        None,
        [*FORECAST, "--horizon", "2", "--dt", "0", "--out", "{tmp}/new.nc"],
        ["--dt", "> 0"],
    ),
    "negative resolution (prior sample)": (
        None,
        [*PRIOR_SAMPLE, "--resolution", "-5", "--out", "{tmp}/new.nc"],
        ["--resolution", "-5"],
    ),
    "negative resolution (grf sample)": (
        None,
        ["grf", "sample", "--resolution", "-5", "--out", "{tmp}/new.nc"],
        ["--resolution", "-5"],
    ),
    "repeated variable": (
        None,
        [*PRIOR_TRAIN, "--out", "{tmp}/new", "--variables", "a,a"],
        ["--variables", "a twice"],
    ),
    "sigma inf": (
        None,
        ["grf", "sample", "--sigma", "inf", "--out", "{tmp}/new.nc"],
        ["--sigma", "finite"],
    ),
    "alpha inf": (
        None,
        ["grf", "sample", "--alpha", "inf", "--out", "{tmp}/new.nc"],
        ["--alpha", "finite"],
    ),
    "alpha so large the fields vanish": (
        None,
        ["grf", "sample", "--alpha", "1e30", "--out", "{tmp}/new.nc"],
        ["all-zero", "alpha"],
    ),
    # 4. requests larger than the machine
    "grf resolution 100000": (
        None,
        ["grf", "sample", "--resolution", "100000", "--out", "{tmp}/new.nc"],
        ["memory", "available", "--force"],
    ),
    "prior sample resolution 100000": (
        None,
        [*PRIOR_SAMPLE, "--resolution", "100000", "--out", "{tmp}/new.nc"],
        ["memory", "--force"],
    ),
    "data make resolution 100000": (
        None,
        [
            "data",
            "make",
            "darcy",
            "--samples",
            "2",
            "--resolution",
            "100000",
            "--out",
            "{tmp}/new.nc",
        ],
        ["memory", "--force"],
    ),  # fmt: skip
    "simulate 1e8 sequences": (
        None,
        [*SIMULATE, "--samples", "100000000", "--times", "1000", "--out", "{tmp}/new.nc"],
        ["memory", "--force"],
    ),
    "simulate t-end 1e9": (
        None,
        [*SIMULATE, "--samples", "2", "--times", "5", "--t-end", "1e9", "--out", "{tmp}/new.nc"],
        ["solver steps", "--t-end", "--force"],
    ),
    # 1. outputs: never overwritten or destroyed, checked before the work
    "forecast over its own data": (
        None,
        [*FORECAST, "--horizon", "2", "--out", "{series}", "--overwrite"],
        ["--out", "also an input"],
    ),
    "forecast over an existing file": (
        prepare_configs,
        [*FORECAST, "--horizon", "2", "--out", "{tmp}/taken.nc"],
        ["taken.nc", "exists", "--overwrite"],
    ),
    "grf sample over an existing file": (
        prepare_configs,
        ["grf", "sample", "--out", "{tmp}/taken.nc"],
        ["taken.nc", "exists", "--overwrite"],
    ),
    "simulate over an existing file": (
        prepare_configs,
        [*SIMULATE, "--samples", "2", "--times", "5", "--out", "{tmp}/taken.nc"],
        ["taken.nc", "exists", "--overwrite"],
    ),
    "prior sample over an existing file": (
        prepare_configs,
        [*PRIOR_SAMPLE, "--out", "{tmp}/taken.nc"],
        ["taken.nc", "exists", "--overwrite"],
    ),
    "prior train into an existing file": (
        prepare_configs,
        [*PRIOR_TRAIN, "--out", "{tmp}/taken.nc"],
        ["taken.nc", "is a file"],
    ),
    "prior train into its own data": (
        None,
        [*PRIOR_TRAIN, "--out", "{data}"],
        ["is a file"],
    ),
    "output with an unknown ending": (
        None,
        ["grf", "sample", "--out", "{tmp}/new.txt"],
        ["new.txt", "must end in", ".nc"],
    ),
    "output is a folder": (
        None,
        ["grf", "sample", "--out", "{tmp}"],
        ["is a folder"],
    ),
    "output under a file": (
        prepare_configs,
        ["grf", "sample", "--out", "{tmp}/parent_is_file/new.nc"],
        ["parent_is_file", "is a file, not a folder"],
    ),
    "plot with an unknown ending": (
        None,
        [*PRIOR_SAMPLE, "--out", "{tmp}/new.nc", "--plot", "{tmp}/new.nc"],
        ["--plot", "must end in", ".png"],
    ),
    "plot over an existing file": (
        prepare_configs,
        ["grf", "sample", "--out", "{tmp}/new.nc", "--plot", "{tmp}/parent_is_file/x.png"],
        ["--plot", "is a file, not a folder"],
    ),
    "data make over an existing file": (
        prepare_configs,
        [
            "data",
            "make",
            "poisson",
            "--samples",
            "1",
            "--resolution",
            "9",
            "--out",
            "{tmp}/taken.nc",
            "--no-progress",
        ],
        ["taken.nc", "exists"],
    ),  # fmt: skip
    # posterior sampling commands
    "observe fraction above one": (
        None,
        ["observe", "--data", "{data}", "--fraction", "2", "--out", "{tmp}/obs.nc"],
        ["--fraction", "2"],
    ),
    "reconstruct onto its own sensor file": (
        None,
        ["reconstruct", "--checkpoint", "{prior}", "--observations", "{data}", "--out", "{data}",
         "--overwrite"],
        ["--out", "input"],
    ),
    "reconstruct on an unknown device": (
        None,
        ["reconstruct", "--checkpoint", "{prior}", "--observations", "{data}", "--out",
         "{tmp}/post.nc", "--device", "banana"],
        ["--device", "banana"],
    ),
}
if not torch.cuda.is_available():
    CASES["cuda without CUDA"] = (
        None,
        [*PRIOR_TRAIN, "--out", "{tmp}/new", "--device", "cuda"],
        ["--device cuda", "no CUDA"],
    )


#: files a preparation step works on, besides those the command names
NEEDS = {prepare_truncated: ["data"], prepare_corrupt_model: ["sde"]}
FIXTURES = {"data": "field_file", "series": "series_file", "prior": "prior_run", "sde": "sde_run"}


def _paths(request, tmp_path, argv, prepare):
    paths = {"tmp": tmp_path}
    for key, fixture in FIXTURES.items():
        if any("{" + key + "}" in a for a in argv) or key in NEEDS.get(prepare, ()):
            paths[key] = request.getfixturevalue(fixture)
    return paths


@pytest.mark.parametrize("case", list(CASES))
def test_user_error_is_one_line_exit_2_before_any_work(case, request, tmp_path, capsys):
    prepare, argv, words = CASES[case]
    paths = _paths(request, tmp_path, argv, prepare)
    if prepare is not None:
        prepare(paths)
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    after = sorted(p.name for p in tmp_path.iterdir())
    assert before == after, "an output was written although the command was refused"
    if (tmp_path / "taken.nc").exists():
        assert (tmp_path / "taken.nc").read_text() == "precious"


def test_data_info_strips_spaces_in_variables(field_file, capsys):
    assert main(["data", "info", str(field_file), "--variables", "a, u"]) == 0
    out = capsys.readouterr().out
    assert "  a dims=" in out and "  u dims=" in out


def test_argument_errors_are_one_line(capsys):
    assert main(["grf", "sample", "--samples", "zero", "--out", "x.nc"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--samples" in err


def test_unexpected_errors_are_one_line_exit_1(monkeypatch, capsys):
    import sciml_diffusion.cli.data as data

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(data, "_info", broken)
    assert main(["data", "info", "x.nc"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ZeroDivisionError" in err and "DEBUG" in err
