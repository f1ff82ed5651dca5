"""The command line with every lazy batch read logged: which rows each rank asked for.

``torchrun ... tests/lazy_rows_cli.py LOG_DIR prior train ...`` runs
``sciml_diffusion.cli.main(["prior", "train", ...])`` on each rank after wrapping
:meth:`LazyBatches.batch`, so that every call appends its rows as one JSON line to
``LOG_DIR/rows_<rank>.jsonl``. Imported, :func:`logging_reads` does the same in this process.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script by torchrun
    sys.path.insert(0, str(ROOT))

from sciml_diffusion import distributed  # noqa: E402
from sciml_diffusion.cli import main  # noqa: E402
from sciml_diffusion.fields.batches import LazyBatches  # noqa: E402


@contextlib.contextmanager
def logging_reads(directory: Path):
    """Within the block, ``LazyBatches.batch(idx)`` logs ``idx`` to ``rows_<rank>.jsonl``."""
    original = LazyBatches.batch

    def batch(self, idx):
        rank = distributed.context().rank
        with open(Path(directory) / f"rows_{rank}.jsonl", "a") as f:
            f.write(json.dumps([int(i) for i in idx.reshape(-1).tolist()]) + "\n")
        return original(self, idx)

    LazyBatches.batch = batch
    try:
        yield
    finally:
        LazyBatches.batch = original


def read_log(directory: Path, rank: int = 0) -> list[list[int]]:
    path = Path(directory) / f"rows_{rank}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


if __name__ == "__main__":
    with logging_reads(Path(sys.argv[1])):
        sys.exit(main(sys.argv[2:]))
