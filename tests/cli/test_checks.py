"""The checks every command runs before work (``sciml_diffusion.cli.checks``)."""

import argparse
import os

import pytest

from sciml_diffusion.cli import checks


def test_output_file_is_never_an_existing_file_or_an_input(tmp_path):
    out = tmp_path / "out.nc"
    assert checks.check_output_file(out) == out  # new: fine
    out.write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        checks.check_output_file(out)
    assert checks.check_output_file(out, overwrite=True) == out
    os.symlink(out, tmp_path / "alias.nc")
    for same in (out, tmp_path / "alias.nc", tmp_path / "sub" / ".." / "out.nc"):
        with pytest.raises(ValueError, match="also an input"):
            checks.check_output_file(same, overwrite=True, inputs=[None, out])
    assert out.read_text() == "mine"


@pytest.mark.parametrize(
    "name, message",
    [("out.txt", "must end in"), ("folder", "is a folder"), ("file/out.nc", "is a file")],
)
def test_output_file_path_problems(tmp_path, name, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=message):
        checks.check_output_file(tmp_path / name)


def test_plot_path_takes_image_endings(tmp_path):
    assert checks.check_plot_path(None) is None
    assert checks.check_plot_path(tmp_path / "a.png") == tmp_path / "a.png"
    with pytest.raises(ValueError, match="--plot .* must end in one of .png"):
        checks.check_plot_path(tmp_path / "a.nc")


def test_stale_temporaries_of_the_output_only_are_removed(tmp_path):
    mine = tmp_path / ".out.nc.x1y2.tmp"
    other = tmp_path / ".data.nc.x1y2.tmp"
    mine.write_text("half")
    other.write_text("someone else's")
    checks.check_output_file(tmp_path / "out.nc")
    assert not mine.exists() and other.exists()


def test_run_folder_loses_only_its_own_temporaries(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".checkpoint.pt.abc.tmp", run / "model.pt.tmp", run / ".log.jsonl.q.tmp"]
    kept = [run / "notes.tmp", run / ".mine.tmp", run / "checkpoint.pt"]
    for path in stale + kept:
        path.write_text("x")
    assert checks.check_output_dir(run) == run
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    with pytest.raises(ValueError, match="is a file"):
        checks.check_output_dir(run / "checkpoint.pt")


def test_device_names(monkeypatch):
    import torch

    assert checks.check_device("cpu") == torch.device("cpu")
    assert checks.check_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="'banana' is not a torch device"):
        checks.check_device("banana")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        checks.check_device("cuda:0")


def test_memory_estimates_are_refused_beyond_the_machine_unless_forced():
    have = checks.available_memory()
    assert have > 0
    checks.check_memory(have / 100, "a small request")
    with pytest.raises(ValueError, match=r"a big request needs about .* --force"):
        checks.check_memory(have * 10, "a big request")
    checks.check_memory(have * 10, "a big request", force=True)


@pytest.mark.parametrize(
    "text, expected",
    [(None, None), ("a", ["a"]), ("a, u", ["a", "u"]), (" a ,u ", ["a", "u"])],
)
def test_parse_variables(text, expected):
    assert checks.parse_variables(text) == expected


@pytest.mark.parametrize("text, message", [("a,a", "twice"), ("a,,u", "empty name")])
def test_parse_variables_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        checks.parse_variables(text)


@pytest.mark.parametrize(
    "text, shape, expected",
    [
        (None, (4, 4), None),
        ("64", (32, 32), (64, 64)),
        ("36,60", (18, 30), (36, 60)),
        ("x2", (18, 30), (36, 60)),
        ("x0.5", (18, 30), (9, 15)),
        ("8", None, (8,)),
    ],
)
def test_parse_resolution(text, shape, expected):
    assert checks.parse_resolution(text, shape) == expected


@pytest.mark.parametrize(
    "text, shape, message",
    [
        ("60", (18, 30), "not square"),
        ("-5", (8, 8), "at least 2 nodes"),
        ("4,5,6", (8, 8), "3 sizes for a 2-D grid"),
        ("big", (8, 8), "nodes per axis"),
        ("x0", (8, 8), "scale factor"),
    ],
)
def test_parse_resolution_refuses(text, shape, message):
    with pytest.raises(ValueError, match=message):
        checks.parse_resolution(text, shape)


@pytest.mark.parametrize(
    "kind, good, bad",
    [
        (checks.positive_int, ("1", "12"), ("0", "-1", "1.5", "ten")),
        (checks.nonnegative_int, ("0", "3"), ("-1",)),
        (checks.positive_float, ("1e-3", "2"), ("0", "-1", "inf", "nan")),
        (checks.nonnegative_float, ("0", "2.5"), ("-0.1", "inf")),
        (checks.finite_float, ("-3", "0"), ("inf", "-inf", "nan")),
        (checks.fraction, ("0", "0.5", "1"), ("1.5", "-0.1")),
    ],
)
def test_argument_types(kind, good, bad):
    for text in good:
        kind(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)
