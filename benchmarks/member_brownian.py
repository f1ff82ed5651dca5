"""Time of an ``sde forecast`` solve with per-member Brownian motion against one
``BrownianInterval`` for the whole batch.

:class:`~sciml_diffusion.sde.brownian.MemberBrownian` (one generator per (sequence,
member), what makes a forecast independent of ``--batch`` and of the number of ranks)
replaces torchsde's ``BrownianInterval`` in
:func:`~sciml_diffusion.sde.evaluate.forecast_from_states`. This times both on the same
model and start states, in one process, alternating them ``--repeats`` times, and prints
one JSON line per (rows, steps) with the median wall and CPU seconds of each and their
ratio (member / interval; CPU time is robust to other jobs on a shared machine).

    python benchmarks/member_brownian.py > docs/results/member_brownian.jsonl
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

import torch

from sciml_diffusion.sde.brownian import member_rows
from sciml_diffusion.sde.evaluate import forecast_from_states, marginal_at_end
from sciml_diffusion.sde.latent import LatentSDE
from sciml_diffusion.sde.series import ObservedSeries


def _timed(function) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(sequences: int, members: int, horizon: float, dt: float, repeats: int) -> dict:
    torch.manual_seed(0)
    model = LatentSDE(2, 4, hidden=64, context_dim=32)
    series = ObservedSeries.from_tensors(torch.linspace(0, 1, 20), torch.randn(sequences, 20, 2))
    lead = torch.linspace(horizon / 10, horizon, 10)
    states = marginal_at_end(model, series, members, 0)
    streams = functools.partial(member_rows, 0, range(sequences), range(members))
    solvers = {
        "interval": lambda: forecast_from_states(model, states, series.end, lead, dt, 0),
        "member": lambda: forecast_from_states(
            model, states, series.end, lead, dt, 0, member_streams=streams
        ),
    }
    times = {name: [] for name in solvers}
    for _ in range(repeats):
        for name, solve in solvers.items():
            times[name].append(_timed(solve))
    row = {
        "benchmark": "member_brownian",
        "rows": sequences * members,
        "steps": round(horizon / dt),
        "threads": torch.get_num_threads(),
    }
    for name, pairs in times.items():
        row[f"{name}_wall_s"] = round(statistics.median(w for w, _ in pairs), 4)
        row[f"{name}_cpu_s"] = round(statistics.median(c for _, c in pairs), 4)
    row["ratio_wall"] = round(row["member_wall_s"] / row["interval_wall_s"], 3)
    row["ratio_cpu"] = round(row["member_cpu_s"] / row["interval_cpu_s"], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--horizon", type=float, default=5.0)
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for sequences in args.sequences:
        print(json.dumps(run(sequences, args.members, args.horizon, args.dt, args.repeats)))


if __name__ == "__main__":
    main()
