"""``sciml-diffusion evaluate``: per-lead-time scores of an ensemble forecast against the
truth (CRPS, ensemble-mean MSE, spread-skill ratio), written as NetCDF, with a plot."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    parser = groups.add_parser(
        "evaluate",
        help="score an ensemble forecast against the truth, per lead time",
        description="Scores of a forecast file (dims member, lead_time) against a truth file "
        "given on the forecast's lead_time axis or as a time series, aligned by valid time. "
        "Means are area-weighted (cos latitude) on lat/lon grids and skip NaN (land).",
    )
    parser.add_argument("--forecast", required=True, help="forecast .nc (forecast run output)")
    parser.add_argument("--truth", required=True, help="truth .nc (lead_time or time axis)")
    parser.add_argument("--out", required=True, help="scores .nc")
    parser.add_argument("--plot", default=None, help="optional PNG of scores vs lead time")
    parser.add_argument("--plain", action="store_true", help="plain (not fair) CRPS estimator")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> None:
    from sciml_diffusion.cli.forecast import check_output_file, check_plot_file
    from sciml_diffusion.fields.io import open_dataset, save_dataset
    from sciml_diffusion.metrics import ensemble_scores

    out = check_output_file(args.out, args.overwrite)
    plot = check_plot_file(args.plot, args.overwrite)
    for name in (args.forecast, args.truth):
        if not Path(name).exists():
            raise FileNotFoundError(f"no such file: {name}")
    forecast = open_dataset(args.forecast)
    truth = open_dataset(args.truth)
    if "member" not in forecast.dims or "lead_time" not in forecast.dims:
        raise ValueError(
            f"{args.forecast} is not an ensemble forecast: it needs member and lead_time dims, "
            f"it has {list(forecast.dims)}"
        )
    scores = ensemble_scores(forecast, truth, fair=not args.plain)
    scores.attrs["forecast"] = str(args.forecast)
    scores.attrs["truth"] = str(args.truth)
    save_dataset(scores, out)
    _print_table(scores)
    print(f"wrote {out}")
    if plot is not None:
        from sciml_diffusion.plot import plot_scores

        name = forecast.attrs.get("method", "forecast")
        for variable in scores["variable"].values:
            target = plot if scores.sizes["variable"] == 1 else _suffixed(plot, variable)
            plot_scores({name: scores}, variable=str(variable), path=target)
            print(f"wrote {target}")


def _suffixed(path: Path, variable) -> Path:
    return path.with_name(f"{path.stem}_{variable}{path.suffix}")


def _print_table(scores) -> None:
    for variable in scores["variable"].values:
        row = scores.sel(variable=variable)
        print(f"{variable}:   lead      CRPS       MSE       SSR")
        for k, lead in enumerate(row["lead_time"].values):
            values = [float(row[key].values[k]) for key in ("crps", "mse", "ssr")]
            print(
                f"{'':>{len(str(variable)) + 1}} {int(lead):>6} "
                + " ".join(f"{v:9.4g}" for v in values)
            )
