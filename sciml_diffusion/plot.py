"""Matplotlib figures that a person looks at: field grids, spectra, ensembles.

Every function returns the ``matplotlib.figure.Figure`` and, given ``path``, saves it
(PNG/PDF by suffix). The non-interactive Agg backend is used when no display is present.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["plot_fields", "save_figure"]


def _pyplot():
    import matplotlib

    if not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fields(
    dataset,
    variables=None,
    samples: int = 4,
    time: int | None = None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    cmap: str = "viridis",
):
    """A grid of images: one row per variable, one column per sample.

    Axes carry the file's coordinates and their units; each row's colour bar the
    variable's units. 1-D fields are drawn as curves; 3-D fields as their middle slice
    along the first (slowest) spatial axis, named in the panel titles.

    Parameters
    ----------
    dataset : FieldDataset
        1-, 2- or 3-D fields.
    variables : sequence of str, optional
        Variables to show (default all).
    samples : int
        Number of samples (columns) to show.
    time : int, optional
        Time index to show for data with a ``time`` dim (default the last).
    path : path, optional
        Where to save the figure.
    """
    plt = _pyplot()
    variables = list(variables) if variables is not None else list(dataset.variables)
    ds = dataset.xarray
    if "time" in ds.dims:
        ds = ds.isel(time=-1 if time is None else time)
    if "sample" in ds.dims:
        ds = ds.isel(sample=slice(0, samples))
    n = ds.sizes.get("sample", 1)
    spatial = list(dataset.spatial_dims)
    where = ""
    if len(spatial) == 3:  # the middle slice of the slowest axis
        axis = spatial.pop(0)
        middle = ds.sizes[axis] // 2
        ds = ds.isel({axis: middle})
        value = ds[axis].values if axis in ds.coords else middle
        where = f" at {axis}={_format(value)}{_unit(ds, axis)}"
    if len(spatial) == 1:
        fig = _curves(plt, ds, variables, spatial[0])
    elif len(spatial) == 2:
        fig = _images(plt, ds, variables, spatial, n, cmap, where)
    else:
        raise ValueError(f"plot_fields draws 1-, 2- and 3-D fields, got dims {spatial}")
    if title:
        fig.suptitle(title + where)
    if path is not None:
        save_figure(fig, path)
    return fig


def _curves(plt, ds, variables, dim):
    fig, axes = plt.subplots(1, len(variables), figsize=(4 * len(variables), 3), squeeze=False)
    for ax, v in zip(axes[0], variables):
        arr = np.atleast_2d(ds[v].values)
        for row in arr.reshape(-1, arr.shape[-1]):
            ax.plot(ds[dim].values, row, lw=1)
        ax.set_title(v)
        ax.set_xlabel(f"{dim}{_unit(ds, dim)}")
        ax.set_ylabel(f"{v}{_unit(ds, v)}")
    return fig


def _images(plt, ds, variables, spatial, n, cmap, where):
    ydim, xdim = spatial
    y, x = _axis(ds, ydim), _axis(ds, xdim)
    extent = [*_edges(x), *_edges(y)]
    fig, axes = plt.subplots(
        len(variables), n, figsize=(2.6 * n + 1.0, 2.4 * len(variables)), squeeze=False
    )
    for r, v in enumerate(variables):
        arr = np.asarray(ds[v].transpose(..., ydim, xdim).values, dtype=np.float64)
        arr = arr.reshape(n, *arr.shape[-2:])
        if y[0] > y[-1]:  # decreasing axis (north to south): draw south at the bottom
            arr = arr[:, ::-1]
        if x[0] > x[-1]:
            arr = arr[:, :, ::-1]
        finite = arr[np.isfinite(arr)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        for c in range(n):
            ax = axes[r, c]
            image = ax.imshow(
                arr[c], origin="lower", cmap=cmap, vmin=lo, vmax=hi, extent=extent,
                aspect="auto",
            )  # fmt: skip
            ax.set_title(f"{v} #{c}", fontsize=8)
            if r == len(variables) - 1:
                ax.set_xlabel(f"{xdim}{_unit(ds, xdim)}")
            if c == 0:
                ax.set_ylabel(f"{ydim}{_unit(ds, ydim)}")
        bar = fig.colorbar(image, ax=list(axes[r]), shrink=0.8)
        bar.set_label(f"{v}{_unit(ds, v)}")
    return fig


def _axis(ds, dim) -> np.ndarray:
    if dim in ds.coords:
        return np.asarray(ds[dim].values, dtype=np.float64)
    return np.arange(ds.sizes[dim], dtype=np.float64)


def _edges(c: np.ndarray) -> tuple[float, float]:
    """Outer cell edges of node coordinates (half a spacing beyond the end nodes)."""
    c = np.sort(c)
    half = (c[-1] - c[0]) / (2 * (c.size - 1)) if c.size > 1 else 0.5
    return float(c[0] - half), float(c[-1] + half)


def _unit(ds, name) -> str:
    units = ds[name].attrs.get("units", "") if name in ds.variables else ""
    return f" [{units}]" if units else ""


def _format(value) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


def save_figure(fig, path: str | os.PathLike) -> None:
    """Save ``fig`` to ``path`` (creating folders) and close it."""
    plt = _pyplot()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


__all__ += ["plot_forecast", "plot_scores"]


def plot_forecast(
    forecast,
    truth=None,
    variable: str | None = None,
    sample: int = 0,
    leads: int = 4,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    cmap: str = "RdBu_r",
):
    """Forecast panels: rows truth / ensemble mean / ensemble spread, one column per lead.

    Parameters
    ----------
    forecast : xarray.Dataset
        ``(sample?, member, lead_time, *spatial)`` variables (2-D fields).
    truth : xarray.Dataset, optional
        On the forecast's ``lead_time`` axis or as a ``time`` series (aligned by valid time).
    variable : str, optional
        Variable to show (default the first).
    leads : int
        Number of lead times shown, evenly spaced over the forecast's.
    """
    from sciml_diffusion.metrics import align_truth

    plt = _pyplot()
    variable = variable or next(v for v in forecast.data_vars if "member" in forecast[v].dims)
    fc = forecast
    if "sample" in fc.dims:
        fc = fc.isel(sample=sample)
    picks = np.unique(np.linspace(0, fc.sizes["lead_time"] - 1, leads).round().astype(int))
    fc = fc.isel(lead_time=picks)
    rows = [("ensemble mean", fc[variable].mean("member")), ("spread (std)", None)]
    spread = fc[variable].std("member") if fc.sizes["member"] > 1 else None
    if truth is not None:
        aligned = align_truth(forecast, truth[[variable]])
        if "sample" in aligned.dims:
            aligned = aligned.isel(sample=sample)
        rows.insert(0, ("truth", aligned[variable].isel(lead_time=picks)))
    fig, axes = plt.subplots(
        len(rows), len(picks), figsize=(2.3 * len(picks) + 1, 2.2 * len(rows)), squeeze=False
    )
    field_rows = [r for r in rows if r[1] is not None]
    lo = min(float(np.nanmin(r[1].values)) for r in field_rows)
    hi = max(float(np.nanmax(r[1].values)) for r in field_rows)
    for r, (label, data) in enumerate(rows):
        for c in range(len(picks)):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if data is None and spread is None:
                ax.set_axis_off()
                continue
            if data is None:
                image = _field_image(ax, spread.isel(lead_time=c), "magma", None, None)
            else:
                image = _field_image(ax, data.isel(lead_time=c), cmap, lo, hi)
            if r == 0:
                ax.set_title(f"lead {int(fc['lead_time'].values[c])}")
            if c == 0:
                ax.set_ylabel(label)
        if data is not None or spread is not None:
            fig.colorbar(image, ax=list(axes[r]), shrink=0.8)
    fig.suptitle(title or f"{forecast.attrs.get('method', 'forecast')}: {variable}")
    if path is not None:
        save_figure(fig, path)
    return fig


def _field_image(ax, field, cmap, lo, hi):
    """``imshow`` of a 2-D DataArray with its first (y/lat) axis increasing upwards."""
    dim = field.dims[0]
    values = np.asarray(field.values, dtype=np.float64)
    axis = field[dim].values if dim in field.coords else np.arange(values.shape[0])
    if axis.size > 1 and axis[0] > axis[-1]:
        values = values[::-1]
    return ax.imshow(values, origin="lower", cmap=cmap, vmin=lo, vmax=hi)


def plot_scores(
    scores: dict,
    variable: str | None = None,
    metrics=("crps", "mse", "ssr"),
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Scores versus lead time, one line per method.

    Parameters
    ----------
    scores : dict of name -> xarray.Dataset
        Outputs of :func:`sciml_diffusion.metrics.ensemble_scores`.
    variable : str, optional
        Row of the ``variable`` dim to show (default the first).
    metrics : sequence of str
        Score variables, one panel each; ``ssr`` gets a reference line at 1.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, (name, ds) in enumerate(scores.items()):
            da = ds[metric]
            if "variable" in da.dims:
                da = da.sel(variable=variable) if variable else da.isel(variable=0)
            if np.all(np.isnan(da.values)):
                continue  # e.g. the spread of a one-member forecast
            x = da["lead_time"].values
            ax.plot(x, da.values, marker="o", ms=3, label=name, color=f"C{i % 10}")
        if metric == "ssr":
            ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xlabel("lead time (steps)")
        ax.set_title(metric.upper())
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path)
    return fig
