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
