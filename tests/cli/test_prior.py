"""`sciml-diffusion prior train` and `sciml-diffusion prior sample`."""

import pytest
import torch

from sciml_diffusion.cli import main
from sciml_diffusion.fields import FieldDataset, GaussianRandomField, Grid

TINY = ["--steps", "4", "--batch-size", "4", "--width", "8", "--modes", "4", "--quiet"]


@pytest.fixture
def data_file(tmp_path):
    grid = Grid.regular((12, 12))
    fields = GaussianRandomField(2.0, 3.0, boundary="neumann").sample(
        grid, 8, torch.Generator().manual_seed(0)
    )
    x = torch.stack([fields, 2 * fields + 1], dim=1)
    x[:, 1, 0, :3] = float("nan")  # masked points are excluded from the loss
    path = tmp_path / "data.nc"
    FieldDataset.from_tensor(x, variables=["a", "u"], grid=grid).save(path)
    return path


def test_train_then_sample_at_two_resolutions(data_file, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["prior", "train", "--data", str(data_file), "--variables", "a,u", "--out", str(run)]
    assert main([*argv, *TINY, "--noise", "white"]) == 0
    assert (run / "checkpoint.pt").exists() and (run / "normalizer.json").exists()
    assert main([*argv, *TINY, "--noise", "white", "--resume", "--steps", "6"]) == 0
    out, png = tmp_path / "s.nc", tmp_path / "s.png"
    base = ["prior", "sample", "--checkpoint", str(run), "--samples", "2", "--steps", "3"]
    assert main([*base, "--out", str(out), "--plot", str(png)]) == 0
    ds = FieldDataset.open(out)
    assert ds.variables == ("a", "u") and ds.to_tensor().shape == (2, 2, 12, 12)
    assert png.stat().st_size > 1000
    fine = tmp_path / "fine.nc"
    assert main([*base, "--resolution", "24", "--seed", "3", "--out", str(fine)]) == 0
    assert FieldDataset.open(fine).grid.shape == (24, 24)
    capsys.readouterr()
    assert main([*base, "--out", str(out)]) == 2  # never overwrites silently
    assert "exists" in capsys.readouterr().err


def test_clear_errors(data_file, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["prior", "train", "--data", str(data_file), "--out", str(run), *TINY]
    cases = [
        (["prior", "train", "--data", "missing.nc", "--out", str(run)], "no such file"),
        ([*base, "--variables", "a,p"], "not in the data"),
        (
            ["prior", "sample", "--checkpoint", str(tmp_path), "--samples", "1", "--out", "x.nc"],
            "not a prior run directory",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert main(base) == 0
    assert main([*base, "--width", "16", "--resume"]) == 2
    assert "different configuration" in capsys.readouterr().err
    (run / "checkpoint.pt").write_bytes(b"\x00garbage")
    argv = ["prior", "sample", "--checkpoint", str(run), "--samples", "1"]
    assert main([*argv, "--out", str(tmp_path / "y.nc")]) == 2
    assert "not a readable prior checkpoint" in capsys.readouterr().err
