"""A map of the design criterion over the candidates, the sensors placed and the picks."""

from __future__ import annotations

import numpy as np

from sciml_diffusion.fields import Observations

__all__ = ["plot_design"]


def plot_design(proposed, observations: Observations | None = None, path=None, title=None):
    """One panel per read variable: criterion before the first pick, old and new sensors.

    Parameters
    ----------
    proposed : ProposedSensors
        A :func:`suggest_sensors` result.
    observations : Observations, optional
        The sensors already placed (black crosses).
    path : str or Path, optional
        Save the figure there (and close it); otherwise return it.
    """
    from sciml_diffusion.plot import _pyplot, save_figure

    plt = _pyplot()
    pool = proposed.candidates
    names = list(dict.fromkeys(pool.variables))
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        _panel(ax, fig, proposed, observations, name)
    fig.suptitle(title or f"{proposed.criterion}: {len(proposed)} new sensors (numbered)")
    if path is None:
        return fig
    save_figure(fig, path)
    return None


def _panel(ax, fig, proposed, observations, name) -> None:
    pool = proposed.candidates
    rows = np.asarray(pool.variables) == name
    score = np.asarray(proposed.scores, dtype=np.float64)[rows]
    where = pool.coords[rows]
    finite = np.isfinite(score)
    x, y = _xy(where)
    if finite.any():
        art = ax.scatter(x[finite], y[finite], c=score[finite], s=18, marker="s", cmap="viridis")
        fig.colorbar(art, ax=ax, shrink=0.8, label=proposed.criterion)
    else:
        ax.scatter(x, y, s=6, color="0.7", label="candidates")
    if observations is not None and name in observations.variables:
        k = observations.variables.index(name)
        values = observations.values
        has = np.ones(len(observations), dtype=bool)
        if values is not None:
            has = np.isfinite(values.reshape(-1, *values.shape[-2:])[..., k].numpy()).any(0)
        ox, oy = _xy(observations.coords[has])
        ax.scatter(ox, oy, marker="x", color="k", s=30, label="placed")
    picked = np.asarray(proposed.variable) == name
    px, py = _xy(proposed.coords[picked])
    ax.scatter(px, py, facecolors="none", edgecolors="r", s=70, linewidths=1.5, label="new")
    for order, (a, b) in zip(np.flatnonzero(picked) + 1, zip(px, py)):
        ax.annotate(
            str(order), (a, b), color="r", fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.set_title(f"reads {name}")
    ax.set_xlabel(proposed.axes[-1])
    ax.set_ylabel(proposed.axes[-2] if len(proposed.axes) > 1 else proposed.criterion)
    ax.legend(fontsize=7, loc="upper right")


def _xy(coords: np.ndarray):
    """Horizontal and vertical plot positions: last axis across, the one before it up."""
    if coords.shape[1] == 1:
        return coords[:, 0], np.zeros(len(coords))
    return coords[:, -1], coords[:, -2]
