"""Error versus network passes per method, and the cost ratio at matched error.

Reads the rows of ``run.py`` (one per task x method x steps) and, per task, plots the score
against the cost per member on a log axis, once counting denoiser evaluations (NFE) and
once all network passes (NFE plus backward passes, the fair cost of gradient guidance),
and prints a markdown table. The ratio at matched error: the reference method's point at
its most steps (its preset) has error ``e_ref`` at cost ``n_ref``; the best method's cost
to reach ``e_ref`` for good (every dearer point at or below it too) is read off its curve by
linear interpolation in ``log(cost)`` between the measured points; below its cheapest point
only a bound ``<= n_min / n_ref`` is known, and if its dearest point is above ``e_ref``
there is no ratio.

Run: ``python experiments/pde_inverse/nfe.py experiments/pde_inverse/results/quick_nfe.jsonl
experiments/pde_inverse/results/quick_nfe_inverse.jsonl --best mmps
--plot docs/results/pde_inverse_nfe_darcy.png``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

COSTS = {"nfe": "denoiser evaluations / member", "passes": "network passes / member"}


def load(path: Path) -> list[dict]:
    """The result rows, with ``passes = nfe + vjp`` (and ``score`` for older rows) added."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in rows:
        r["passes"] = r["nfe"] + r["vjp"]
        if "score" not in r:  # rows written before run.py recorded the scored metric
            rate = f"error_rate_{r['scored']}"
            r["metric"] = "error_rate" if rate in r else "relative_l2"
            r["score"] = r[rate] if rate in r else r[f"relative_l2_{r['scored']}"]
    return rows


def curve(rows: list[dict], task: str, method: str, cost: str) -> tuple[np.ndarray, np.ndarray]:
    """``(cost, score)`` of one method on one task, by increasing cost."""
    mine = [r for r in rows if (r["task"], r["method"]) == (task, method)]
    points = sorted((r[cost], r["score"]) for r in mine)
    return np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)


def cost_to_reach(costs: np.ndarray, scores: np.ndarray, target: float) -> tuple[float, str]:
    """The least cost from which the curve stays at or below ``target``.

    Returns ``(cost, "=")`` by linear interpolation of the score in ``log(cost)`` between
    the last point above the target and the next one; ``(cheapest cost, "<=")`` when every
    point is at or below it; ``nan`` when the most expensive point is above it. A cheap
    point that dips below the target while a dearer one is above it does not count.
    """
    above = np.flatnonzero(scores > target)
    if not len(above):
        return float(costs[0]), "<="
    k = above[-1] + 1
    if k == len(costs):
        return float("nan"), "="
    lo, hi = np.log(costs[k - 1]), np.log(costs[k])
    t = (scores[k - 1] - target) / (scores[k - 1] - scores[k])
    return float(np.exp(lo + t * (hi - lo))), "="


def matched_ratios(rows: list[dict], task: str, best: str, references, cost: str) -> list[dict]:
    """Per reference method: its preset point and the best method's cost ratio there."""
    out = []
    b_cost, b_score = curve(rows, task, best, cost)
    for ref in references:
        r_cost, r_score = curve(rows, task, ref, cost)
        if not len(r_cost) or not len(b_cost):
            continue
        need, relation = cost_to_reach(b_cost, b_score, r_score[-1])
        out.append(
            {
                "task": task,
                "cost": cost,
                "best": best,
                "reference": ref,
                "reference_cost": float(r_cost[-1]),
                "reference_score": float(r_score[-1]),
                "best_cost": need,
                "ratio": need / r_cost[-1],
                "relation": relation,
            }
        )
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Score versus NFE and versus all passes, one line per method, one row per task."""
    from sciml_diffusion.plot import _pyplot, save_figure

    plt = _pyplot()
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(9, 3.4 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        metric = next(r["metric"] for r in rows if r["task"] == task)
        scored = next(r["scored"] for r in rows if r["task"] == task)
        for j, cost in enumerate(COSTS):
            ax = axes[i, j]
            for method in methods:
                x, y = curve(rows, task, method, cost)
                if len(x):
                    ax.plot(x, 100 * y, "o-", label=method)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(COSTS[cost])
            ax.set_ylabel(f"{task}: {scored} {metric.replace('_', ' ')} (%)")
            ax.grid(alpha=0.3, which="both")
        axes[i, 0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def table(rows: list[dict]) -> str:
    """Markdown rows: task, method, steps, NFE, passes, score, CRPS, spread/skill, s/member."""
    lines = [
        "| task | method | steps | NFE / member | passes / member | score | CRPS | "
        "spread/skill | s / member |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["task"], r["method"], r["steps"])):
        lines.append(
            f"| {r['task']} | {r['method']} | {r['steps']} | {r['nfe']} | {r['passes']} | "
            f"{100 * r['score']:.1f} % | {r['crps']:.3g} | {r['spread_skill']:.2f} | "
            f"{r['seconds_per_member']:.1f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="JSON lines of run.py")
    parser.add_argument("--best", default="mmps")
    parser.add_argument("--references", nargs="+", default=["diffusionpde", "fundps"])
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    rows = [row for path in args.results for row in load(path)]
    print(table(rows))
    for task in dict.fromkeys(r["task"] for r in rows):
        for cost in COSTS:
            for ratio in matched_ratios(rows, task, args.best, args.references, cost):
                print(json.dumps(ratio))
    if args.plot:
        plot(rows, args.plot, args.title or ", ".join(p.stem for p in args.results))


if __name__ == "__main__":
    main()
