"""Interrupted and resumed runs of ``prior train`` and ``sde train``; stale temporary files."""

import json

import pytest

from sciml_diffusion.cli import main
from tests.cli.conftest import TINY_PRIOR, TINY_SDE


def logged_steps(run):
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


def interrupt_after(monkeypatch, cls, method, calls):
    """Make ``cls.method`` raise KeyboardInterrupt on call number ``calls + 1``."""
    original = getattr(cls, method)
    count = {"n": 0}

    def wrapped(self, *args, **kwargs):
        if count["n"] == calls:
            raise KeyboardInterrupt
        count["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, wrapped)


def test_prior_interrupted_before_its_first_checkpoint_resumes_from_step_0(
    field_file, tmp_path, monkeypatch, capsys
):
    from sciml_diffusion.diffusion.train import _Run

    run = tmp_path / "run"
    argv = ["prior", "train", "--data", str(field_file), "--out", str(run), *TINY_PRIOR]
    interrupt_after(monkeypatch, _Run, "save", 0)
    assert main([*argv, "--steps", "3"]) == 130
    assert not (run / "checkpoint.pt").exists() and (run / "config.json").exists()
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*argv, "--steps", "3"]) == 2  # a rerun does not overwrite it ...
    assert "--resume" in capsys.readouterr().err
    assert main(["prior", "train", "--data", str(field_file), "--out", str(run), "--resume"]) == 0
    assert logged_steps(run) == [1, 2, 3]  # ... and --resume starts again from step 0


def test_prior_resume_reuses_the_stored_settings_and_refuses_changed_ones(
    prior_run, field_file, capsys
):
    base = ["prior", "train", "--data", str(field_file), "--out", str(prior_run), "--quiet"]
    assert main([*base, "--resume", "--steps", "4"]) == 0  # no other flag needed
    config = json.loads((prior_run / "config.json").read_text())
    assert config["model"]["width"] == 4 and config["train"]["steps"] == 4
    assert main([*base, "--resume", "--steps", "5", "--width", "16", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "width: 4 -> 16" in err and "lr" in err


def test_prior_log_is_cut_back_to_the_checkpoint_on_resume(field_file, tmp_path, monkeypatch):
    from sciml_diffusion.diffusion.train import _Run

    run = tmp_path / "run"
    argv = ["prior", "train", "--data", str(field_file), "--out", str(run), *TINY_PRIOR]
    interrupt_after(monkeypatch, _Run, "_train_step", 3)
    assert main([*argv, "--steps", "6", "--checkpoint-every", "2"]) == 130
    assert logged_steps(run) == [1, 2, 3]
    monkeypatch.undo()
    (run / ".checkpoint.pt.abcd.tmp").write_bytes(b"left by a killed write")
    assert main([*argv, "--steps", "6", "--resume"]) == 0
    assert logged_steps(run) == [1, 2, 3, 4, 5, 6]
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


def test_sde_resume_refuses_architecture_and_optimiser_changes(sde_run, series_file, capsys):
    base = ["sde", "train", "--data", str(series_file), "--out", str(sde_run), "--quiet"]
    before = json.loads((sde_run / "config.json").read_text())
    assert main([*base, "--resume", "--latent-dim", "7", "--hidden", "64", "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--latent-dim 1 -> 7" in err and "--hidden 4 -> 64" in err and "--lr" in err
    assert json.loads((sde_run / "config.json").read_text()) == before
    assert main([*base, "--resume", "--steps", "3"]) == 0  # the stored settings, no flags
    after = json.loads((sde_run / "config.json").read_text())
    assert after["model"] == before["model"] and after["step"] == 3


def test_sde_interrupted_runs_resume_and_log_each_step_once(series_file, tmp_path, monkeypatch):
    from sciml_diffusion.sde.train import Trainer

    run = tmp_path / "run"
    argv = ["sde", "train", "--data", str(series_file), "--out", str(run), *TINY_SDE]
    interrupt_after(monkeypatch, Trainer, "step", 3)
    assert main([*argv, "--steps", "6", "--checkpoint-every", "2"]) == 130
    assert logged_steps(run) == [1, 2, 3]
    monkeypatch.undo()
    assert main([*argv, "--steps", "6", "--checkpoint-every", "2", "--resume"]) == 0
    assert logged_steps(run) == [1, 2, 3, 4, 5, 6]


def test_sde_resume_without_a_checkpoint_starts_from_step_0(series_file, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["sde", "train", "--data", str(series_file), "--out", str(run), *TINY_SDE]
    assert main([*argv, "--resume"]) == 0
    assert "starting from step 0" in capsys.readouterr().out
    assert logged_steps(run) == [1, 2]


def test_prior_resume_without_a_run_starts_from_step_0(field_file, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["prior", "train", "--data", str(field_file), "--out", str(run), *TINY_PRIOR]
    assert main([*argv, "--resume"]) == 0
    assert "starting from step 0" in capsys.readouterr().out
    assert logged_steps(run) == [1, 2]


@pytest.mark.parametrize(
    "argv",
    [
        ["grf", "sample", "--resolution", "8", "--samples", "1"],
        ["sde", "simulate", "ou", "--samples", "2", "--times", "3", "--quiet"],
    ],
)
def test_stale_temporary_files_of_a_killed_write_are_removed(tmp_path, argv):
    out = tmp_path / "out.nc"
    stale = tmp_path / ".out.nc.k3j2_x.tmp"
    stale.write_bytes(b"\0" * 1000)
    other = tmp_path / ".other.nc.k3j2_x.tmp"  # another file's: left alone
    other.write_bytes(b"\0")
    assert main([*argv, "--out", str(out)]) == 0
    assert out.exists() and not stale.exists() and other.exists()
