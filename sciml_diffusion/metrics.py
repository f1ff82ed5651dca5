r"""Scores for fields and ensembles: relative L2, CRPS, spread-skill, rank histogram, spectra.

- Relative L2 error :math:`\|\hat x - x\|_2 / \|x\|_2` per sample.
- CRPS of an ensemble (Gneiting & Raftery 2007), computed by ``scoringrules``:
  :math:`\mathrm{CRPS}(F, y) = E|X - y| - \tfrac12 E|X - X'|`, fair (unbiased) estimator by
  default.
- Spread-skill: the ensemble spread (mean member variance, corrected by ``(M+1)/M``) and
  the skill (MSE of the ensemble mean); a calibrated ensemble has ratio ~ 1
  (Fortin et al. 2014).
- Rank histogram (Talagrand): where the truth falls among the sorted members; flat when
  calibrated.
- Radially averaged power spectrum of periodic 2-D fields.

Every ensemble score also takes ``xarray.DataArray`` inputs with named dims (``member``,
``lead_time``, spatial dims): :func:`ensemble_scores` gives CRPS, ensemble-mean MSE,
spread, RMSE and spread-skill ratio per lead time, as area-weighted means over the other
dims (weights :math:`\cos\varphi` on a latitude axis, :func:`area_weights`) that skip NaN
("no data", e.g. land). :func:`align_truth` puts a truth given as a ``time`` series on the
forecast's ``lead_time`` axis by valid time.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

__all__ = [
    "relative_l2",
    "crps_ensemble",
    "spread_skill",
    "rank_histogram",
    "radial_power_spectrum",
    "area_weights",
    "weighted_mean",
    "align_truth",
    "ensemble_scores",
]

#: names of a latitude dim (also recognised by ``standard_name`` or ``units``)
_LATITUDE_NAMES = ("lat", "latitude", "nav_lat")


def relative_l2(prediction: torch.Tensor, target: torch.Tensor, ndim: int) -> torch.Tensor:
    """Relative L2 error over the last ``ndim`` dims: ``(...)`` from ``(..., *spatial)``."""
    dims = tuple(range(-ndim, 0))
    return (prediction - target).square().sum(dims).sqrt() / target.square().sum(dims).sqrt()


def crps_ensemble(ensemble, observation, member_dim: int = 0, fair: bool = True):
    """CRPS of an ensemble against observations, elementwise.

    Parameters
    ----------
    ensemble : array ``(..., M, ...)`` or xarray.DataArray
        Members along ``member_dim`` (an index, or a dim name for xarray; default
        ``"member"`` there).
    observation : array
        Shaped like ``ensemble`` without ``member_dim``; for xarray, any array that
        broadcasts against it by dim names.
    fair : bool
        The fair (unbiased in M) estimator; otherwise the plain ensemble estimator.

    Returns
    -------
    numpy array of the observation's shape (xarray: a DataArray with the ensemble's dims
    but ``member_dim``); NaN where the observation or a member is NaN.
    """
    import scoringrules as sr

    if isinstance(ensemble, xr.DataArray):
        return _crps_xarray(ensemble, observation, _member_name(member_dim), fair)
    ens = np.moveaxis(np.asarray(_numpy(ensemble), dtype=np.float64), member_dim, -1)
    obs = np.asarray(_numpy(observation), dtype=np.float64)
    if ens.shape[:-1] != obs.shape:
        raise ValueError(
            f"ensemble of shape {ens.shape} (members last) does not match observation "
            f"shape {obs.shape}"
        )
    # O(M log M) sorted forms: "pwm" equals the fair estimator, "qd" the plain energy form
    estimator = "pwm" if fair else "qd"
    return np.asarray(sr.crps_ensemble(obs, ens, m_axis=-1, estimator=estimator))


def spread_skill(ensemble, observation, member_dim: int = 0, keep=("lead_time",), weights=None):
    """Ensemble spread, skill (RMSE of the mean) and their ratio, over all elements.

    For xarray inputs (``member_dim`` a dim name, default ``"member"``) returns an
    ``xarray.Dataset`` of ``spread``, ``skill``, ``ratio`` over the dims ``keep`` that the
    ensemble has (default: per lead time), averaged with ``weights`` (e.g.
    :func:`area_weights`) over the others, NaN skipped.
    """
    if isinstance(ensemble, xr.DataArray):
        return _spread_skill_xarray(ensemble, observation, _member_name(member_dim), keep, weights)
    ens = np.moveaxis(np.asarray(_numpy(ensemble), dtype=np.float64), member_dim, 0)
    obs = np.asarray(_numpy(observation), dtype=np.float64)
    m = ens.shape[0]
    if m < 2:
        raise ValueError("spread-skill needs at least 2 members")
    skill = np.sqrt(np.mean((ens.mean(0) - obs) ** 2))
    spread = np.sqrt(np.mean(ens.var(0, ddof=1)) * (m + 1) / m)
    return {"spread": float(spread), "skill": float(skill), "ratio": float(spread / skill)}


def rank_histogram(ensemble, observation, member_dim: int = 0) -> np.ndarray:
    """Counts of the rank of the observation among the ``M`` members: ``(M + 1,)``."""
    ens = np.moveaxis(np.asarray(_numpy(ensemble), dtype=np.float64), member_dim, 0)
    obs = np.asarray(_numpy(observation), dtype=np.float64)
    ranks = (ens < obs[None]).sum(0).reshape(-1)
    return np.bincount(ranks, minlength=ens.shape[0] + 1)


def radial_power_spectrum(fields: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of 2-D fields ``(..., ny, nx)``.

    Returns
    -------
    wavenumbers : ``(K,)`` integer shell radii ``0..min(ny, nx)//2``
    power : ``(K,)`` mean power per shell, averaged over the leading dims.
    """
    fields = torch.as_tensor(fields, dtype=torch.float64)
    ny, nx = fields.shape[-2:]
    power = torch.fft.fft2(fields, norm="ortho").abs().square()
    power = power.reshape(-1, ny, nx).mean(0).numpy()
    ky = np.fft.fftfreq(ny) * ny
    kx = np.fft.fftfreq(nx) * nx
    radius = np.rint(np.hypot(*np.meshgrid(ky, kx, indexing="ij"))).astype(int)
    kmax = min(ny, nx) // 2
    shells = np.arange(kmax + 1)
    totals = np.bincount(radius.ravel(), weights=power.ravel(), minlength=kmax + 1)
    counts = np.bincount(radius.ravel(), minlength=kmax + 1)
    return shells, totals[: kmax + 1] / np.maximum(counts[: kmax + 1], 1)


def area_weights(obj) -> xr.DataArray | None:
    r"""Cell-area weights :math:`\cos\varphi` along a latitude dim of ``obj`` (None if none).

    The latitude dim is found by name (``lat``, ``latitude``), by ``standard_name``
    ``latitude`` or by ``units`` ``degrees_north``; the weights are normalised to mean 1.
    """
    for dim in obj.dims:
        attrs = obj[dim].attrs if dim in obj.coords else {}
        named = str(dim).lower() in _LATITUDE_NAMES
        if (
            named
            or attrs.get("standard_name") == "latitude"
            or str(attrs.get("units", "")).lower() in ("degrees_north", "degree_north")
        ):
            if dim not in obj.coords:
                raise ValueError(f"latitude dim {dim!r} has no coordinate values")
            lat = np.deg2rad(np.asarray(obj[dim].values, dtype=np.float64))
            w = np.clip(np.cos(lat), 0.0, None)
            return xr.DataArray(w / w.mean(), dims=(dim,), coords={dim: obj[dim].values})
    return None


def weighted_mean(values: xr.DataArray, dims, weights: xr.DataArray | None = None):
    """Mean of ``values`` over ``dims`` with ``weights`` (broadcast by name), skipping NaN."""
    dims = [d for d in dims if d in values.dims]
    valid = values.notnull()
    w = xr.ones_like(values) if weights is None else (weights * xr.ones_like(values))
    w = w.where(valid, 0.0)
    return (values.fillna(0.0) * w).sum(dims) / w.sum(dims).where(lambda s: s > 0)


def align_truth(forecast, truth, lead_dim: str = "lead_time"):
    """``truth`` on the forecast's ``lead_dim`` axis.

    ``truth`` either has ``lead_dim`` already (selected at the forecast's lead times), or
    is a ``time`` series read at the forecast's ``valid_time`` coordinate.

    Raises
    ------
    ValueError
        When neither applies, or a valid time or lead time is missing from the truth.
    """
    if lead_dim in truth.dims:
        missing = np.setdiff1d(forecast[lead_dim].values, truth[lead_dim].values)
        if missing.size:
            raise ValueError(f"the truth has no lead times {missing.tolist()}")
        return truth.sel({lead_dim: forecast[lead_dim].values})
    if "time" not in truth.dims:
        raise ValueError(
            f"the truth needs a {lead_dim!r} dim or a 'time' dim to align by valid time; "
            f"it has {list(truth.dims)}"
        )
    if "valid_time" not in forecast.coords:
        raise ValueError("the forecast has no valid_time coordinate to align a time series")
    valid = forecast["valid_time"]
    times = truth["time"].values
    wanted = np.asarray(valid.values).reshape(-1)
    if times.dtype.kind in "fiu" and times.size > 1:  # numbers: equal up to rounding
        tol = 1e-6 * float(np.median(np.abs(np.diff(times.astype(np.float64)))))
        nearest = np.abs(wanted[:, None] - times[None, :]).argmin(1)
        present = np.abs(times[nearest] - wanted) <= tol
        selector = xr.DataArray(nearest.reshape(valid.shape), dims=valid.dims)
    else:
        present = np.isin(wanted, times)
        selector = None
    if not present.all():
        raise ValueError(
            f"the truth's time axis has no data at valid times {wanted[~present][:5].tolist()}; "
            "give a truth that covers the forecast period"
        )
    out = truth.sel(time=valid) if selector is None else truth.isel(time=selector)
    return out.drop_vars(["time", "valid_time"], errors="ignore")


def ensemble_scores(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    member_dim: str = "member",
    lead_dim: str = "lead_time",
    weights="area",
    fair: bool = True,
) -> xr.Dataset:
    """Per-lead-time scores of an ensemble forecast, one row per variable.

    Parameters
    ----------
    forecast : xarray.Dataset
        Variables with ``member_dim`` and ``lead_dim`` (and any of ``sample``, spatial).
    truth : xarray.Dataset
        The same variables on ``lead_dim`` or as a ``time`` series (:func:`align_truth`).
    weights : ``"area"``, None or xarray.DataArray
        ``"area"``: :func:`area_weights` of the forecast (uniform without latitude).
    fair : bool
        Fair CRPS estimator.

    Returns
    -------
    xarray.Dataset
        ``crps``, ``mse`` (of the ensemble mean), ``rmse``, ``spread`` and ``ssr``
        (spread-skill ratio, NaN for one member), each ``(variable, lead_dim)``, averaged
        over every other dim with the weights, NaN skipped.
    """
    if weights == "area":
        weights = area_weights(forecast)
    variables = [v for v in forecast.data_vars if member_dim in forecast[v].dims]
    missing = [v for v in variables if v not in truth.data_vars]
    if not variables or missing:
        raise ValueError(
            f"forecast variables {variables} must all be in the truth (missing: {missing})"
        )
    truth = align_truth(forecast, truth[variables], lead_dim)
    rows = [
        _scores_one(forecast[v], truth[v], member_dim, lead_dim, weights, fair) for v in variables
    ]
    out = xr.concat(rows, dim=xr.DataArray(variables, dims="variable", name="variable"))
    out.attrs = {"members": int(forecast.sizes[member_dim]), "crps": "fair" if fair else "plain"}
    return out


def _scores_one(ens: xr.DataArray, obs: xr.DataArray, member_dim, lead_dim, weights, fair):
    ens, obs = _common_coords(ens, obs)
    dims = [d for d in ens.dims if d not in (member_dim, lead_dim)]
    crps = _crps_xarray(ens, obs, member_dim, fair)
    mean = ens.mean(member_dim)
    m = ens.sizes[member_dim]
    mse = weighted_mean((mean - obs) ** 2, dims, weights)
    if m > 1:
        var = weighted_mean(ens.var(member_dim, ddof=1), dims, weights)
        spread = np.sqrt(var * (m + 1) / m)
    else:
        spread = xr.full_like(mse, np.nan)
    return xr.Dataset(
        {
            "crps": weighted_mean(crps, dims, weights),
            "mse": mse,
            "rmse": np.sqrt(mse),
            "spread": spread,
            "ssr": spread / np.sqrt(mse),
        }
    )


def _common_coords(ens: xr.DataArray, obs: xr.DataArray):
    """Drop the truth's non-index coordinates and check shared dims have equal sizes."""
    obs = obs.reset_coords(drop=True)
    ens = ens.reset_coords(drop=True)
    for d in set(ens.dims) & set(obs.dims):
        if ens.sizes[d] != obs.sizes[d]:
            raise ValueError(
                f"forecast and truth differ along {d!r}: {ens.sizes[d]} vs {obs.sizes[d]}"
            )
        if d in ens.coords and d in obs.coords:
            a, b = ens[d].values, obs[d].values
            same = np.array_equal(a, b) if a.dtype.kind not in "fc" else np.allclose(a, b)
            if not same:
                raise ValueError(
                    f"forecast and truth have different {d!r} coordinates; put the truth on "
                    "the forecast's grid first"
                )
            obs = obs.assign_coords({d: a})
    return ens, obs


def _crps_xarray(ens: xr.DataArray, obs, member_dim: str, fair: bool) -> xr.DataArray:
    import scoringrules as sr

    if member_dim not in ens.dims:
        raise ValueError(f"the ensemble has no {member_dim!r} dim; it has {list(ens.dims)}")
    obs = obs if isinstance(obs, xr.DataArray) else xr.DataArray(obs)
    ens, obs = xr.broadcast(ens, obs, exclude=[member_dim])
    estimator = "pwm" if fair else "qd"
    if ens.sizes[member_dim] == 1:
        return np.abs(ens.isel({member_dim: 0}, drop=True) - obs)  # fair/plain agree: MAE
    return xr.apply_ufunc(
        lambda o, e: np.asarray(sr.crps_ensemble(o, e, m_axis=-1, estimator=estimator)),
        obs.astype(np.float64),
        ens.astype(np.float64),
        input_core_dims=[[], [member_dim]],
    )


def _spread_skill_xarray(ens, obs, member_dim, keep, weights) -> xr.Dataset:
    m = ens.sizes[member_dim]
    if m < 2:
        raise ValueError("spread-skill needs at least 2 members")
    dims = [d for d in ens.dims if d != member_dim and d not in (keep or ())]
    skill = np.sqrt(weighted_mean((ens.mean(member_dim) - obs) ** 2, dims, weights))
    spread = np.sqrt(weighted_mean(ens.var(member_dim, ddof=1), dims, weights) * (m + 1) / m)
    return xr.Dataset({"spread": spread, "skill": skill, "ratio": spread / skill})


def _member_name(member_dim) -> str:
    return member_dim if isinstance(member_dim, str) else "member"


def _numpy(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
