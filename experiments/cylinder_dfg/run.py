"""Schäfer–Turek (DFG) verification of the cylinder-flow solver at several resolutions.

Runs :func:`sciml_diffusion.pdes.cylinder.schaefer_turek` for every (case, resolution) of a
config and writes one JSON line per run to ``docs/results/cylinder_dfg_<config>.jsonl``:

    python experiments/cylinder_dfg/run.py --config experiments/cylinder_dfg/quick.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sciml_diffusion.pdes.cylinder import SCHAEFER_TUREK, schaefer_turek

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    out = ROOT / "docs" / "results" / f"cylinder_dfg_{Path(args.config).stem}.jsonl"
    if out.exists() and not args.overwrite:
        raise SystemExit(f"{out} exists; pass --overwrite to replace it")
    torch.set_num_threads(int(config.get("threads", 1)))
    lines = []
    for run in config["runs"]:
        dtype = {"float32": torch.float32, "float64": torch.float64}[run.get("dtype", "float64")]
        start = time.perf_counter()
        result = schaefer_turek(
            run["case"], run["resolution"], run["velocity"], run["time"], dtype=dtype
        )
        result.update(
            seconds=round(time.perf_counter() - start, 1),
            dtype=run.get("dtype", "float64"),
            reference=SCHAEFER_TUREK[run["case"]],
            machine=f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
        )
        print(json.dumps(result), flush=True)
        lines.append(json.dumps(result))
        out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
