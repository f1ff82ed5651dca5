"""Small files shared by the command-line tests: a field data set, a time series, runs.

Each is made once per session and copied into the test's folder, so a test may damage
its copy.
"""

import shutil

import pytest
import torch

from sciml_diffusion.cli import main
from sciml_diffusion.fields import FieldDataset, GaussianRandomField, Grid

#: the smallest prior training that exercises every part of the loop
TINY_PRIOR = ["--steps", "2", "--batch-size", "2", "--width", "4", "--modes", "2", "--quiet"]
#: the smallest latent SDE training
TINY_SDE = ["--latent-dim", "1", "--hidden", "4", "--context-dim", "2", "--steps", "2"]
TINY_SDE += ["--batch-size", "4", "--quiet"]


@pytest.fixture(scope="session")
def _originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_originals")
    grid = Grid.regular((12, 12))
    fields = GaussianRandomField(2.0, 3.0, boundary="neumann").sample(
        grid, 8, torch.Generator().manual_seed(0)
    )
    x = torch.stack([fields, 2 * fields + 1], dim=1)
    x[:, 1, 0, :3] = float("nan")
    FieldDataset.from_tensor(x, variables=["a", "u"], grid=grid).save(root / "data.nc")
    argv = ["sde", "simulate", "ou", "--samples", "8", "--times", "6"]
    assert main([*argv, "--out", str(root / "ou.nc")]) == 0
    argv = ["prior", "train", "--data", str(root / "data.nc"), "--out", str(root / "prior_run")]
    assert main([*argv, *TINY_PRIOR, "--noise", "white"]) == 0
    argv = ["sde", "train", "--data", str(root / "ou.nc"), "--out", str(root / "sde_run")]
    assert main([*argv, *TINY_SDE]) == 0
    return root


def _copy(originals, name, tmp_path):
    source, target = originals / name, tmp_path / name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy(source, target)
    return target


@pytest.fixture
def field_file(_originals, tmp_path):
    """8 two-variable fields (a, u) on a 12x12 grid, three points of u NaN."""
    return _copy(_originals, "data.nc", tmp_path)


@pytest.fixture
def series_file(_originals, tmp_path):
    """8 Ornstein-Uhlenbeck sequences of 6 times."""
    return _copy(_originals, "ou.nc", tmp_path)


@pytest.fixture
def prior_run(_originals, tmp_path):
    """A tiny prior run folder trained on ``field_file`` (2 steps, white noise)."""
    return _copy(_originals, "prior_run", tmp_path)


@pytest.fixture
def sde_run(_originals, tmp_path):
    """A tiny latent SDE run folder trained on ``series_file`` (2 steps)."""
    return _copy(_originals, "sde_run", tmp_path)
