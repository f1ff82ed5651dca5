"""``benchmarks/gpu_smoke.py``: every step is a valid command line, and a failing step is
recorded without stopping the chain (the full chain takes minutes on CPU: it is run by
hand, ``python3 benchmarks/gpu_smoke.py --device cpu --steps 2 --resolution 8 --samples 8``)."""

import argparse
import json
import runpy
from pathlib import Path

import pytest

from sciml_diffusion.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
smoke = runpy.run_path(str(ROOT / "benchmarks" / "gpu_smoke.py"))


@pytest.mark.parametrize("compile", [False, True])
def test_every_step_parses(compile):
    args = argparse.Namespace(
        device="cuda",
        resolution=32,
        samples=64,
        steps=100,
        forecast_method="diffusion",
        no_compile=not compile,
    )
    steps = smoke["chain"](args)
    names = [name for name, _, _ in steps]
    assert ("prior sample --compile" in names) == compile
    parser = build_parser()
    for name, argv, _ in steps:
        parsed = parser.parse_args(argv)
        assert callable(parsed.func), name
        if "--device" in argv:
            assert parsed.device == "cuda"
    flagged = {name for name, argv, _ in steps if "--bf16" in argv}
    assert {"prior train", "prior sample", "forecast train", "forecast run"} <= flagged


def test_a_failing_step_is_recorded_not_raised(tmp_path):
    record = smoke["run_step"]("bad", ["no-such-command"], None, tmp_path, 60)
    assert record["ok"] is False and record["command"] == "bad" and record["error"]
    json.dumps(record)  # one JSON line
    check = smoke["fields"]("missing.nc")
    record = smoke["run_step"]("ok", ["--help"], check, tmp_path, 60)
    assert record["ok"] is False and "missing.nc" in record["error"][0]
