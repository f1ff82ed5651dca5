"""The Python examples of docs/forecast.md run as written, top to bottom."""

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "forecast.md"


def test_forecast_guide_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)
    assert (tmp_path / "sst_run" / "forecaster" / "checkpoint.pt").exists()
