"""Scores and figures of a reconstruction against a known truth (demo and experiments)."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from sciml_diffusion.metrics import crps_ensemble, relative_l2, spread_skill

__all__ = ["score_reconstruction", "plot_reconstruction"]


def score_reconstruction(ds: xr.Dataset, truth: dict, thresholds: dict | None = None) -> dict:
    """Per variable: relative L2 of the ensemble mean, mean CRPS, spread-skill ratio.

    Parameters
    ----------
    ds : xarray.Dataset
        A :func:`~sciml_diffusion.inverse.reconstruct` result.
    truth : dict variable -> array ``(*space)``
        The true fields, physical units.
    thresholds : dict variable -> (threshold, low, high), optional
        Also score the pixel error rate of the thresholded mean (Darcy ``a`` at 7.5).
    """
    out = {}
    for name, true in truth.items():
        true = np.asarray(true, dtype=np.float64)
        ndim = true.ndim
        mean = torch.as_tensor(ds[f"{name}_mean"].values, dtype=torch.float64)
        scores = {
            "relative_l2": float(relative_l2(mean, torch.as_tensor(true), ndim)),
            "crps": float(crps_ensemble(ds[name].values, true, member_dim=0).mean()),
        }
        if ds.sizes["member"] > 1:
            scores["spread_skill"] = spread_skill(ds[name].values, true)["ratio"]
        if thresholds and name in thresholds:
            level, low, high = thresholds[name]
            binary = np.where(ds[f"{name}_mean"].values > level, high, low)
            scores["error_rate"] = float(np.mean(binary != true))
        out[name] = scores
    return out


def plot_reconstruction(ds: xr.Dataset, truth: dict | None = None, path=None, variables=None):
    """Rows per variable: truth, sensors, ensemble mean, ensemble std, error (2-D fields)."""
    from sciml_diffusion.plot import _pyplot, save_figure

    plt = _pyplot()
    variables = list(variables or [v for v in ds.data_vars if f"{v}_mean" in ds.data_vars])
    columns = (
        ["truth", "sensors", "mean", "std", "|error|"] if truth else ["sensors", "mean", "std"]
    )
    fig, axes = plt.subplots(
        len(variables),
        len(columns),
        figsize=(2.6 * len(columns), 2.4 * len(variables)),
        squeeze=False,
    )
    spatial = ds[f"{variables[0]}_mean"].dims
    extent = [float(ds[spatial[1]].min()), float(ds[spatial[1]].max())]
    extent += [float(ds[spatial[0]].min()), float(ds[spatial[0]].max())]
    for r, name in enumerate(variables):
        mean = ds[f"{name}_mean"].values
        lo, hi = float(np.nanmin(mean)), float(np.nanmax(mean))
        if truth:
            lo, hi = float(np.min(truth[name])), float(np.max(truth[name]))
        panels = {
            "truth": (truth[name] if truth else None, dict(vmin=lo, vmax=hi)),
            "mean": (mean, dict(vmin=lo, vmax=hi)),
            "std": (ds[f"{name}_std"].values, dict(cmap="magma")),
            "|error|": (np.abs(mean - truth[name]) if truth else None, dict(cmap="magma")),
        }
        for c, column in enumerate(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if column == "sensors":
                _sensor_panel(ax, ds, name, extent, lo, hi)
            else:
                image, style = panels[column]
                shown = ax.imshow(image, origin="lower", extent=extent, **style)
                fig.colorbar(shown, ax=ax, shrink=0.8)
            if r == 0:
                ax.set_title(column)
            if c == 0:
                ax.set_ylabel(name)
    if path is not None:
        save_figure(fig, path)
    return fig


def _sensor_panel(ax, ds, name, extent, lo, hi):
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    key = f"{name}_observed"
    if key not in ds or "sensor_x" not in ds:
        ax.text(0.5, 0.5, "no sensors", ha="center", va="center", transform=ax.transAxes)
        return
    values = ds[key].values
    seen = np.isfinite(values)
    y = ds["sensor_y"].values if "sensor_y" in ds else np.zeros_like(values)
    ax.scatter(ds["sensor_x"].values[seen], y[seen], c=values[seen], s=6, vmin=lo, vmax=hi)
    ax.set_facecolor("0.92")
    ax.text(0.02, 0.02, f"{int(seen.sum())} sensors", transform=ax.transAxes, fontsize=7)
