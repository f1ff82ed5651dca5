"""The Python examples in the user guide run as written."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: pages whose every ```python block must run (blocks marked `# doctest: skip` are shown only)
PAGES = ["fields.md", "latent_sde.md", "priors.md", "pdes.md"]


def blocks(page):
    text = (DOCS / page).read_text()
    return [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "doctest: skip" not in b]


@pytest.mark.parametrize("page", PAGES)
def test_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runnable = [b for b in blocks(page) if "sst.nc" not in b]
    assert runnable, f"{page} has no runnable example"
    namespace: dict = {}
    for block in runnable:  # a page reads top to bottom: later blocks use earlier names
        exec(compile(block, f"{page}", "exec"), namespace)
