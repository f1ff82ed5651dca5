"""``prior train --chunks`` under ``torchrun``: each rank reads only its rows of every
global batch from disk, and the run reaches the weights of one process in memory."""

from __future__ import annotations

import json

import torch

from sciml_diffusion.cli import main
from sciml_diffusion.diffusion.prior import load_checkpoint
from tests.data_parallel_steps import field_data
from tests.lazy_rows_cli import logging_reads, read_log
from tests.torchrun import ROOT, torchrun

SETTINGS = {"n_layers": 1, "warmup": 2, "lr": 3e-3, "val_fraction": 0.0, "device": "cpu"}


def _argv(data, out, config, batch, *extra):
    return ["prior", "train", "--data", str(data), "--out", str(out), "--config", str(config),
            "--steps", "3", "--batch-size", str(batch), "--width", "8", "--modes", "4",
            "--checkpoint-every", "3", "--quiet", *extra]  # fmt: skip


def test_lazy_training_on_two_ranks_reads_disjoint_shards_and_matches_memory(tmp_path):
    data, config = tmp_path / "fields.nc", tmp_path / "tiny.json"
    field_data().save(data)  # 12 fields on 8x8 with NaN holes
    config.write_text(json.dumps(SETTINGS))
    logs = {name: tmp_path / name for name in ("two", "one", "memory")}
    for folder in logs.values():
        folder.mkdir()

    script = str(ROOT / "tests" / "lazy_rows_cli.py")
    two = _argv(data, tmp_path / "run_two", config, 3, "--chunks", "2")
    torchrun([script, str(logs["two"]), *two])
    with logging_reads(logs["one"]):  # one process, lazy, the global batch of 6
        assert main(_argv(data, tmp_path / "run_one", config, 6, "--chunks", "2")) == 0
    with logging_reads(logs["memory"]):  # one process, in memory
        assert main(_argv(data, tmp_path / "run_memory", config, 6)) == 0

    ranks = [read_log(logs["two"], r) for r in (0, 1)]
    single = read_log(logs["one"])
    assert len(single) == 3 and all(len(rows) == 6 for rows in single)  # 3 steps, batch 6
    assert read_log(logs["memory"]) == []  # in memory: no reads from disk
    for step, rows in enumerate(single):
        mine, theirs = ranks[0][step], ranks[1][step]
        assert len(mine) == len(theirs) == 3
        assert not set(mine) & set(theirs)  # disjoint shards
        assert mine + theirs == rows  # together: the global batch, in its order
    assert len(ranks[0]) == len(ranks[1]) == 3  # nothing else was read

    want = load_checkpoint(tmp_path / "run_memory", "cpu")["model"]
    for run in ("run_two", "run_one"):
        got = load_checkpoint(tmp_path / run, "cpu")["model"]
        for key, value in got.items():
            torch.testing.assert_close(value, want[key], rtol=1e-5, atol=1e-6, msg=key)


def test_the_chunks_commands_of_the_docs_read_lazily(tmp_path, monkeypatch):
    """The ``--chunks`` block of docs/scaling.md, at a tiny size, trains from lazy data."""
    import re

    from sciml_diffusion.fields import FieldDataset
    from sciml_diffusion.fields.batches import LazyBatches, LazyFrames
    from tests.forecast.conftest import waves

    text = (ROOT / "docs" / "scaling.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "--chunks 4" in b)
    commands = [c.split("sciml_diffusion.cli ", 1)[1] for c in block.replace("\\\n", "").split(
        "\n") if "sciml_diffusion.cli" in c]  # fmt: skip
    assert [c.split()[:2] for c in commands] == [["prior", "train"], ["forecast", "train"]]
    monkeypatch.chdir(tmp_path)
    FieldDataset(field_data().xarray.chunk(sample=4)).save("fields.zarr")
    ns = waves(samples=2, steps=50).rename(u="vorticity")  # 5-frame windows, 10% held out
    ns.to_netcdf("ns.nc", engine="h5netcdf")
    readers = []
    for cls in (LazyBatches, LazyFrames):
        init = cls.__init__
        monkeypatch.setattr(
            cls, "__init__", lambda self, *a, _i=init, **k: readers.append(type(self)) or _i(
                self, *a, **k)
        )  # fmt: skip
    tiny = ["--steps", "2", "--batch-size", "4", "--width", "4", "--modes", "2", "--quiet",
            "--device", "cpu"]  # fmt: skip
    for command in commands:
        argv = [a for a in command.split() if a not in ("--steps", "400")] + tiny
        assert main(argv) == 0, command
    assert LazyBatches in readers and LazyFrames in readers  # both read from disk per batch
