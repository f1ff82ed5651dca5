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
    """A grid of images: one row per variable, one column per sample (2-D fields).

    Parameters
    ----------
    dataset : FieldDataset
        2-D fields (1-D fields are drawn as curves, one panel per variable).
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
    spatial = dataset.spatial_dims
    if len(spatial) == 1:
        fig, axes = plt.subplots(1, len(variables), figsize=(4 * len(variables), 3), squeeze=False)
        for ax, v in zip(axes[0], variables):
            arr = np.atleast_2d(ds[v].values)
            for row in arr:
                ax.plot(ds[spatial[0]].values, row, lw=1)
            ax.set_title(v)
            ax.set_xlabel(spatial[0])
    elif len(spatial) == 2:
        fig, axes = plt.subplots(
            len(variables), n, figsize=(2.4 * n + 0.8, 2.2 * len(variables)), squeeze=False
        )
        for r, v in enumerate(variables):
            arr = np.asarray(ds[v].values).reshape(n, *ds[v].shape[-2:])
            lo, hi = np.nanmin(arr), np.nanmax(arr)
            for c in range(n):
                ax = axes[r, c]
                image = ax.imshow(arr[c], origin="lower", cmap=cmap, vmin=lo, vmax=hi)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(v)
            fig.colorbar(image, ax=list(axes[r]), shrink=0.8)
    else:
        raise ValueError(f"plot_fields draws 1-D and 2-D fields, got dims {spatial}")
    if title:
        fig.suptitle(title)
    if path is not None:
        save_figure(fig, path)
    return fig


def save_figure(fig, path: str | os.PathLike) -> None:
    """Save ``fig`` to ``path`` (creating folders) and close it."""
    plt = _pyplot()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
