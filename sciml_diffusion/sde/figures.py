"""Figures of latent-SDE forecasts: the ensemble fan against the truth."""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from sciml_diffusion.plot import _pyplot, save_figure

__all__ = ["plot_fan"]


def plot_fan(
    forecast: xr.Dataset,
    samples=(0,),
    channel: int = 0,
    truth: xr.Dataset | None = None,
    variable: str = "state",
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Median and 50 % / 90 % member bands of forecasts against valid time, one panel each.

    Parameters
    ----------
    forecast : xarray.Dataset
        ``variable(member, sample, lead_time, channel)`` with ``valid_time(sample,
        lead_time)`` (the output of ``sde forecast``).
    samples : sequence of int
        Which forecasts to draw.
    truth : xarray.Dataset, optional
        A record ``variable(time, channel)`` on numeric times, drawn as a line over the
        context and forecast span.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(len(samples), 1, figsize=(7, 2.6 * len(samples)), squeeze=False)
    units = forecast["valid_time"].attrs.get("time_units", "time units of the data")
    for ax, s in zip(axes[:, 0], samples):
        members = forecast[variable].isel(sample=s, channel=channel).transpose("member", ...)
        valid = forecast["valid_time"].isel(sample=s).values
        q = np.quantile(members.values, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
        ax.fill_between(valid, q[0], q[4], color="C0", alpha=0.2, label="90 % band")
        ax.fill_between(valid, q[1], q[3], color="C0", alpha=0.35, label="50 % band")
        ax.plot(valid, q[2], color="C0", label="median")
        start = float(forecast["init_time"].isel(sample=s)) if "init_time" in forecast else None
        if truth is not None:
            record = truth[variable]
            record = record.isel(channel=channel) if "channel" in record.dims else record
            record = record.squeeze(drop=True)
            lo = start - 2 * (valid[-1] - start) if start is not None else valid[0]
            shown = record.sel(time=slice(lo, valid[-1]))
            ax.plot(shown["time"].values, shown.values, color="k", lw=1.2, label="truth")
        if start is not None:
            ax.axvline(start, color="0.5", ls=":", lw=1)
        ax.set_ylabel(str(forecast["channel"].values[channel]))
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(units)
    axes[0, 0].legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
