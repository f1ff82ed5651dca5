"""``benchmarks/gpu.py`` runs at a tiny size on CPU, and the SLURM examples parse."""

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--resolution", "16", "--steps", "2", "--warmup", "1"]
TINY += ["--members", "2", "--sampling-steps", "3", "--repeats", "1", "--width", "8"]
TINY += ["--modes", "4"]


def test_gpu_benchmark_smoke(tmp_path, monkeypatch, capsys):
    out = tmp_path / "gpu.jsonl"
    argv = ["gpu.py", *TINY, "--configs", "fp32", "bf16", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "benchmarks" / "gpu.py"), run_name="__main__")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records == printed
    benches = [(r["bench"], r["config"]) for r in records]
    assert benches == [
        ("gpu_prior_train", "fp32"),
        ("gpu_prior_sample", "fp32"),
        ("gpu_prior_train", "bf16"),
        ("gpu_prior_sample", "bf16"),
        ("gpu_prior_sample_diff", "bf16"),
    ]
    train, sample = records[0], records[1]
    assert train["steps_per_s"] > 0 and sample["s_per_member"] > 0
    assert train["speedup_vs_fp32"] == 1.0 and records[2]["speedup_vs_fp32"] > 0
    assert not records[2]["autocast"] and records[2]["peak_mem_mb"] is None  # CPU
    assert records[4]["rel_l2_vs_fp32"] == 0.0  # bf16 is a no-op on CPU
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="exists"):  # never overwrites without --overwrite
        runpy.run_path(str(ROOT / "benchmarks" / "gpu.py"), run_name="__main__")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", sorted((ROOT / "experiments" / "slurm").glob("*.sbatch")))
def test_slurm_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert "srun" in text and "torchrun" in text and "-m sciml_diffusion.cli" in text


def test_slurm_examples_exist():
    names = {p.name for p in (ROOT / "experiments" / "slurm").iterdir()}
    assert {"README.md", "train_prior.sbatch", "sample_prior.sbatch"} <= names


def _page() -> Path:
    """The scaling guide, ``docs/scaling.md``."""
    return ROOT / "docs" / "scaling.md"


def _single_gpu_section() -> str:
    """Its "Single GPU" section (up to the next ``## `` heading)."""
    text = _page().read_text()
    assert "\n## Single GPU" in text, "docs/scaling.md lost its single-GPU section"
    return text.split("\n## Single GPU", 1)[1].split("\n## ", 1)[0]


def test_single_gpu_docs_example_runs(tmp_path, monkeypatch, capsys):
    import re

    monkeypatch.chdir(tmp_path)
    text = _single_gpu_section()
    found = re.findall(r"```python\n(.*?)```", text, re.S)
    blocks = [b for b in found if "doctest: skip" not in b]
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(_page()), "exec"), namespace)
    assert "torch.Size([4, 1, 32, 32])" in capsys.readouterr().out
    for flag in ("--bf16", "--compile", "--pin-memory"):
        assert flag in text
    assert "experiments/slurm/" in _page().read_text()
