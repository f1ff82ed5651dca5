"""The Python examples of docs/inverse.md run as written."""

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "inverse.md"


def test_inverse_page_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)
    assert (tmp_path / "my_sensors.nc").exists()
    printed = capsys.readouterr().out
    error = float(re.search(r"mean error ([0-9.]+)", printed).group(1))
    ratio = float(re.search(r"std ratio ([0-9.]+)", printed).group(1))
    assert error < 0.2 and 0.7 < ratio < 1.3
