"""Latent SDE: prior SDE, Gaussian decoder, and a sequence encoder giving posterior marginals.

Generative model (Li et al. 2020, "Scalable gradients for SDEs"; Bartosh, Vetrov, Naesseth
2025, "SDE Matching")::

    z_{t0} ~ N(m0, diag(s0^2))
    dz = f_theta(z, t) dt + g_theta(z, t) dW        (Itô, diagonal g)
    x_{t_i} | z_{t_i} ~ N(W z_{t_i} + b, diag(s_x^2))

The diffusion is diagonal and *elementwise*: ``g_i`` depends on ``z`` only through ``z_i``
(or is a constant), which is what makes ``sum_j d(g_i^2)/dz_j = d(g_i^2)/dz_i`` computable
by one forward-mode derivative with a tangent of ones.

The encoder reads the whole observed sequence ``X`` (irregular times, missing values) and
answers queries at any time ``t`` with a context vector, by attention over the observed
slots with a learnable Gaussian window in time per head. From the context, the posterior is
given either as a Gaussian marginal ``z_t = mu_phi(t, X) + sigma_phi(t, X) eps``
(``posterior="marginal"``, trained by SDE matching) or as a posterior drift network
``h_phi(z, t, X)`` with the initial marginal at ``t0`` (``posterior="drift"``, trained through
an SDE solver as in torchsde's latent SDE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sciml_diffusion.sde.covariates import RawTime, make_covariates
from sciml_diffusion.sde.series import ObservedSeries

__all__ = [
    "TimeEmbedding",
    "EncodedSequence",
    "AttentionEncoder",
    "ElementwiseDiffusion",
    "ConstantDiffusion",
    "GaussianDecoder",
    "LatentSDE",
    "NELBOTerms",
]


def _mlp(inputs: int, hidden: int, outputs: int, layers: int = 2) -> nn.Sequential:
    modules: list[nn.Module] = [nn.Linear(inputs, hidden), nn.SiLU()]
    for _ in range(layers - 2):
        modules += [nn.Linear(hidden, hidden), nn.SiLU()]
    return nn.Sequential(*modules, nn.Linear(hidden, outputs))


class TimeEmbedding(nn.Module):
    """Fourier features ``[t / T, sin(2^k pi t / T), cos(2^k pi t / T)]``, ``k < F``.

    Parameters
    ----------
    frequencies : int
        Number ``F`` of octaves.
    time_scale : float
        ``T``, the typical length of an observation window.
    """

    def __init__(self, frequencies: int = 6, time_scale: float = 1.0):
        super().__init__()
        omega = math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32) / time_scale
        rates = torch.cat([torch.tensor([1.0 / time_scale]), omega])
        self.register_buffer("rates", rates[None, :], persistent=False)
        self.time_scale = time_scale

    @property
    def dim(self) -> int:
        return 2 * self.rates.shape[-1] - 1

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``(*)`` -> ``(*, 1 + 2F)``."""
        # an outer product by matmul: forward-mode AD of broadcast products is slow in torch
        angle = t[..., None] @ self.rates.to(t)
        return torch.cat([angle[..., :1], angle[..., 1:].sin(), angle[..., 1:].cos()], -1)


@dataclass(frozen=True)
class EncodedSequence:
    """What the encoder keeps of a batch of sequences: per-slot keys and values.

    Attributes
    ----------
    keys : Tensor ``(B, T, H, d + 2)``
        Content keys, then the two time-window components (see :class:`AttentionEncoder`).
    values : Tensor ``(B, T, H, d)``
    times : Tensor ``(B, T)``
    observed : Tensor ``(B, T)``, bool
    reference : Tensor ``(B,)``
        Each sequence's first observed time; window terms use times relative to it.
    """

    keys: torch.Tensor
    values: torch.Tensor
    times: torch.Tensor
    observed: torch.Tensor
    reference: torch.Tensor

    def repeat(self, members: int) -> EncodedSequence:
        """Each sequence ``members`` times in a row: batch ``B`` -> ``B * members``."""
        return EncodedSequence(
            self.keys.repeat_interleave(members, 0),
            self.values.repeat_interleave(members, 0),
            self.times.repeat_interleave(members, 0),
            self.observed.repeat_interleave(members, 0),
            self.reference.repeat_interleave(members, 0),
        )


class AttentionEncoder(nn.Module):
    """Attention over the observed slots, queried at any time ``t``.

    For a query at time ``t`` and head ``h`` the score of slot ``j`` is
    ``q_h(t) . k_hj / sqrt(d) - (t - t_j)^2 / (2 w_h^2)``: content plus a learnable Gaussian
    window of width ``w_h`` in time. Missing values enter as zeros with their mask; padding
    slots (no observed channel) get no attention at all. Smooth in ``t``, so its time
    derivative exists.

    The window is computed as ``2 c t t_j - c t_j^2`` with ``c = 1 / (2 w_h^2)`` (the dropped
    ``-c t^2`` is the same for every slot and cancels in the softmax), folded into one
    product with the keys; times are taken relative to each sequence's first observation.
    This keeps every ``t``-dependent operation cheap under forward-mode AD.

    Parameters
    ----------
    data_dim : int
        Channels ``C`` of the observations.
    context_dim : int
        Size of the returned context.
    hidden : int
        Width of the internal networks.
    heads, head_dim : int
        Attention heads and their size ``d``.
    time_scale : float
        Typical window length; sets the time features and the initial widths.
    covariates : nn.Module, optional
        Known covariates of absolute time ``(*)`` -> ``(*, F)`` (e.g. the calendar phase,
        :mod:`sciml_diffusion.sde.covariates`), added to every slot's and query's features.

    The time features are of the time *since the sequence's first observation*, so the
    encoder reads a window the same way wherever it lies in the record; absolute time
    enters only through ``covariates``.
    """

    def __init__(
        self,
        data_dim: int,
        context_dim: int = 32,
        hidden: int = 64,
        heads: int = 4,
        head_dim: int = 16,
        time_scale: float = 1.0,
        covariates: nn.Module | None = None,
    ):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.time = TimeEmbedding(time_scale=time_scale)
        self.covariates = covariates
        features = self.time.dim + (covariates.dim if covariates is not None else 0)
        width = heads * head_dim
        self.observation_net = _mlp(2 * data_dim + features, hidden, 2 * width)
        self.query_net = _mlp(features, hidden, width)
        widths = time_scale * torch.logspace(math.log10(0.02), math.log10(0.5), heads)
        self.log_width = nn.Parameter(widths.log())
        self.readout = _mlp(width + features, hidden, context_dim)

    def time_features(self, t: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Features of times ``t`` ``(B, K)`` relative to ``reference`` ``(B,)``."""
        emb = self.time(t - reference[:, None])
        if self.covariates is None:
            return emb
        return torch.cat([emb, self.covariates(t)], -1)

    def encode(self, series: ObservedSeries) -> EncodedSequence:
        """Keys and values of every slot of ``series`` (batch ``B``)."""
        values = torch.where(series.mask, series.values, torch.zeros_like(series.values))
        reference = series.start
        times = self.time_features(series.times, reference)
        features = torch.cat([values, series.mask.to(values), times], -1)
        keys, values = self.observation_net(features).chunk(2, -1)
        shape = (*keys.shape[:2], self.heads, self.head_dim)
        lag = (series.times - reference[:, None])[..., None]  # (B, T, 1)
        c = 0.5 * torch.exp(-2.0 * self.log_width)  # (H,)
        padding = (~series.observed).to(values)[..., None]
        window = torch.stack([2.0 * c * lag, -c * lag**2 - 1e9 * padding], -1)
        keys = torch.cat([keys.reshape(shape) / math.sqrt(self.head_dim), window], -1)
        return EncodedSequence(
            keys, values.reshape(shape), series.times, series.observed, reference
        )

    def context(self, encoded: EncodedSequence, t: torch.Tensor) -> torch.Tensor:
        """Context at query times ``t`` ``(B, K)`` -> ``(B, K, context_dim)``."""
        b, k = t.shape
        emb = self.time_features(t, encoded.reference)
        query = _rows(self.query_net, emb).reshape(b, k, self.heads, self.head_dim)
        lag = (t - encoded.reference[:, None])[..., None, None].expand(b, k, self.heads, 1)
        query = torch.cat([query, lag, torch.ones_like(lag)], -1)
        scores = query.transpose(1, 2) @ encoded.keys.permute(0, 2, 3, 1)  # (B, H, K, T)
        weights = torch.softmax(scores, -1)
        attended = (weights @ encoded.values.transpose(1, 2)).transpose(1, 2).reshape(b, k, -1)
        return _rows(self.readout, torch.cat([attended, emb], -1))


class ElementwiseDiffusion(nn.Module):
    """Diagonal diffusion with one small network per latent coordinate.

    ``g_i(z, t) = g_min + softplus(sum_k v_ik tanh(w_ik z_i + u_ik . c(t) + c_ik) + e_i)``
    depends on ``z`` only through ``z_i``; ``c(t)`` are known covariates of time (none, the
    time itself, or the calendar phase: :mod:`sciml_diffusion.sde.covariates`).

    Parameters
    ----------
    latent_dim : int
    hidden : int
        Hidden units per coordinate.
    init : float
        Initial value of ``g`` at ``z = 0``.
    covariates : nn.Module, optional
        ``c``: ``(*)`` -> ``(*, F)``; ``g`` is independent of ``t`` without it.
    """

    elementwise = True

    def __init__(
        self,
        latent_dim: int,
        hidden: int = 16,
        init: float = 0.3,
        covariates: nn.Module | None = None,
    ):
        super().__init__()
        self.w = nn.Parameter(torch.randn(latent_dim, hidden))
        self.c = nn.Parameter(torch.randn(latent_dim, hidden) * 0.5)
        self.v = nn.Parameter(torch.randn(latent_dim, hidden) / hidden)
        self.e = nn.Parameter(torch.full((latent_dim,), _softplus_inverse(init - 1e-3)))
        self.covariates = covariates
        self.u = None
        if covariates is not None:
            self.u = nn.Parameter(torch.zeros(latent_dim, hidden, covariates.dim))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``t`` broadcastable to ``z.shape[:-1]``, ``z`` ``(*, D)`` -> ``g`` ``(*, D)``."""
        return self.value_and_derivative(t, z)[0]

    def value_and_derivative(
        self, t: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``g`` and ``dg_i/dz_i`` in closed form, each ``(*, D)``."""
        pre = z[..., None] * self.w + self.c
        if self.u is not None:
            features = self.covariates(torch.as_tensor(t).to(z).expand(z.shape[:-1]))
            pre = pre + (features[..., None, None, :] * self.u).sum(-1)
        hidden = torch.tanh(pre)
        activation = (hidden * self.v).sum(-1) + self.e
        slope = ((1 - hidden**2) * self.v * self.w).sum(-1)
        return 1e-3 + F.softplus(activation), torch.sigmoid(activation) * slope


class ConstantDiffusion(nn.Module):
    """Diagonal diffusion constant in ``z`` and ``t``: ``g_i = softplus(e_i)``.

    Parameters
    ----------
    latent_dim : int
    init : float
        Initial value of ``g``.
    """

    elementwise = True

    def __init__(self, latent_dim: int, init: float = 0.3):
        super().__init__()
        self.e = nn.Parameter(torch.full((latent_dim,), _softplus_inverse(init)))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.e).expand_as(z)

    def value_and_derivative(
        self, t: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``g`` and ``dg_i/dz_i = 0``, each ``(*, D)``."""
        return self.forward(t, z), torch.zeros_like(z)


class GaussianDecoder(nn.Module):
    """``p(x | z, t) = N(W z + b + B c(t), diag(s^2))`` with a learnable or fixed ``s``.

    With ``covariates`` the mean has a known-time part ``B c(t)`` (``B`` starts at zero):
    with calendar-phase covariates it is a Fourier series of the seasonal cycle, so the
    latent SDE carries the anomalies from it. Without, ``B c(t) = 0`` and ``t`` is unused.

    Parameters
    ----------
    latent_dim, data_dim : int
    std : float or None
        Fixed observation std, or ``None`` to learn one per channel (initialised at 0.1).
    covariates : nn.Module, optional
        ``c``: ``(*)`` -> ``(*, F)``.
    """

    def __init__(
        self,
        latent_dim: int,
        data_dim: int,
        std: float | None = None,
        covariates: nn.Module | None = None,
    ):
        super().__init__()
        self.linear = nn.Linear(latent_dim, data_dim)
        self.covariates = covariates
        self.seasonal = None
        if covariates is not None:
            self.seasonal = nn.Linear(covariates.dim, data_dim, bias=False)
            nn.init.zeros_(self.seasonal.weight)
        if std is None:
            self.log_std = nn.Parameter(torch.full((data_dim,), math.log(0.1)))
        else:
            if std <= 0:
                raise ValueError(f"decoder std must be > 0, got {std}")
            self.register_buffer("log_std", torch.full((data_dim,), math.log(std)))

    @property
    def std(self) -> torch.Tensor:
        return self.log_std.exp()

    def mean(self, z: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` ``(*, D)`` at times ``t`` ``(*)`` -> ``(*, C)`` (``t`` needed with covariates)."""
        out = self.linear(z)
        if self.seasonal is None:
            return out
        if t is None:
            raise ValueError("this decoder depends on time; pass the times t")
        t = torch.as_tensor(t).to(z).expand(z.shape[:-1])
        return out + self.seasonal(self.covariates(t))

    def log_prob(
        self, x: torch.Tensor, z: torch.Tensor, mask: torch.Tensor, t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sum over observed entries of ``log N(x; mean(z, t), s^2)``, ``(B, T, C)`` -> ``(B,)``.

        ``t`` ``(B, T)``: the times of the slots (needed when the decoder depends on time).
        """
        resid = (x - self.mean(z, t)) / self.std
        logp = -0.5 * resid**2 - self.log_std - 0.5 * math.log(2 * math.pi)
        return torch.where(mask, logp, torch.zeros_like(logp)).sum((-2, -1))

    def expected_log_prob(
        self,
        x: torch.Tensor,
        mu: torch.Tensor,
        sigma: torch.Tensor,
        mask: torch.Tensor,
        t: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``E_{z ~ N(mu, sigma^2)} log p(x | z, t)`` in closed form (linear in ``z``).

        ``x`` ``(B, T, C)``, ``mu``, ``sigma`` ``(B, T, D)``, ``t`` ``(B, T)`` -> ``(B,)``.
        """
        variance = (sigma**2) @ (self.linear.weight**2).T
        resid = (x - self.mean(mu, t)) / self.std
        logp = -0.5 * (resid**2 + variance / self.std**2) - self.log_std
        logp = logp - 0.5 * math.log(2 * math.pi)
        return torch.where(mask, logp, torch.zeros_like(logp)).sum((-2, -1))


@dataclass(frozen=True)
class NELBOTerms:
    """Terms of a negative ELBO, each ``(B,)`` (per sequence, in normalised data units).

    ``reconstruction`` is ``-sum_i log p(x_i | z_ti)`` over the observed values,
    ``initial_kl`` the KL at ``t0`` and ``path_kl`` the KL between the path measures.
    """

    reconstruction: torch.Tensor
    initial_kl: torch.Tensor
    path_kl: torch.Tensor

    @property
    def nelbo(self) -> torch.Tensor:
        """``(B,)`` negative ELBO."""
        return self.reconstruction + self.initial_kl + self.path_kl

    def total(self, kl_weight: float = 1.0) -> torch.Tensor:
        """Batch mean of ``reconstruction + kl_weight * (initial_kl + path_kl)``."""
        kl = self.initial_kl + self.path_kl
        return (self.reconstruction + kl_weight * kl).mean()


class LatentSDE(nn.Module):
    """A latent SDE with an amortised posterior over paths.

    Parameters
    ----------
    data_dim : int
        Observed channels ``C``.
    latent_dim : int
        Latent dimension ``D >= 1``.
    hidden : int
        Width of the drift, encoder and posterior networks.
    context_dim : int
        Size of the encoder's context.
    diffusion : {"elementwise", "constant"}
        Elementwise networks ``g_i(z_i[, t])`` or constant diagonal ``g``.
    decoder_std : float or None
        Fixed observation std (in normalised units) or ``None`` to learn it.
    posterior : {"marginal", "drift"}
        ``"marginal"``: Gaussian marginals at every ``t`` (SDE matching). ``"drift"``: the
        marginal only at ``t0`` plus a posterior drift network (adjoint, backprop).
    time_scale : float
        Typical observation window length (sets time features).
    autonomous : bool
        Prior drift and diffusion independent of ``t`` (needed to forecast far ahead), unless
        ``period`` or ``covariate_series`` give them bounded covariates of time.
        ``autonomous=False`` alone feeds the raw time ``t`` (only inside the trained span).
    heads : int
        Attention heads of the encoder.
    period : float, optional
        Seasonal period in the data's time units: drift, elementwise diffusion and encoder
        see the calendar phase as ``harmonics`` sin/cos pairs.
    harmonics : int
        Harmonics of the calendar phase.
    covariate_series : dict, optional
        ``{"times": (N,), "values": (N, F)}``, a known covariate series (interpolated
        linearly in time) used instead of the calendar phase.
    seasonal_decoder : bool
        The decoder mean also has a part linear in the covariates (a seasonal cycle in data
        space), so the latent SDE models anomalies from it (needs covariates).
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: int = 64,
        context_dim: int = 32,
        diffusion: str = "elementwise",
        decoder_std: float | None = None,
        posterior: str = "marginal",
        time_scale: float = 1.0,
        autonomous: bool = True,
        heads: int = 4,
        period: float | None = None,
        harmonics: int = 2,
        covariate_series: dict | None = None,
        seasonal_decoder: bool = False,
    ):
        super().__init__()
        _check_choices(latent_dim, data_dim, diffusion, posterior)
        self.config = {
            "data_dim": data_dim,
            "latent_dim": latent_dim,
            "hidden": hidden,
            "context_dim": context_dim,
            "diffusion": diffusion,
            "decoder_std": decoder_std,
            "posterior": posterior,
            "time_scale": time_scale,
            "autonomous": autonomous,
            "heads": heads,
            "period": period,
            "harmonics": harmonics,
            "covariate_series": covariate_series,
            "seasonal_decoder": seasonal_decoder,
        }
        self.latent_dim, self.posterior = latent_dim, posterior
        self.covariates = make_covariates(autonomous, period, harmonics, covariate_series)
        self.autonomous = self.covariates is None
        features = 0 if self.covariates is None else self.covariates.dim
        self.prior_drift_net = _mlp(latent_dim + features, hidden, latent_dim, layers=3)
        if diffusion == "elementwise":
            self.diffusion = ElementwiseDiffusion(latent_dim, covariates=self.covariates)
        else:
            self.diffusion = ConstantDiffusion(latent_dim)
        self.initial_mean = nn.Parameter(torch.zeros(latent_dim))
        self.initial_log_std = nn.Parameter(torch.zeros(latent_dim))
        if seasonal_decoder and self.covariates is None:
            raise ValueError(
                "seasonal_decoder needs covariates of time: give a period or a covariate series"
            )
        self.decoder = GaussianDecoder(
            latent_dim, data_dim, decoder_std, self.covariates if seasonal_decoder else None
        )
        self.encoder = AttentionEncoder(
            data_dim,
            context_dim,
            hidden,
            heads=heads,
            time_scale=time_scale,
            covariates=None if isinstance(self.covariates, RawTime) else self.covariates,
        )
        self.marginal_head = _mlp(context_dim, hidden, 2 * latent_dim)
        if posterior == "drift":
            self.posterior_drift_net = _mlp(latent_dim + context_dim, hidden, latent_dim, 3)

    @classmethod
    def from_config(cls, config: dict) -> LatentSDE:
        return cls(**config)

    def prior_drift(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``f_theta(z, t)``: ``z`` ``(*, D)``, ``t`` broadcastable to ``z.shape[:-1]``."""
        if self.covariates is None:
            return self.prior_drift_net(z)
        t = torch.as_tensor(t).to(z).expand(z.shape[:-1])
        return self.prior_drift_net(torch.cat([z, self.covariates(t)], -1))

    def encode(self, series: ObservedSeries) -> EncodedSequence:
        return self.encoder.encode(series)

    def marginal(
        self, encoded: EncodedSequence, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior marginal ``(mu, sigma)`` at times ``t`` ``(B, K)``, each ``(B, K, D)``."""
        mu, pre = _rows(self.marginal_head, self.encoder.context(encoded, t)).chunk(2, -1)
        return mu, F.softplus(pre) + 1e-4

    def posterior_drift(self, context: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Learned posterior drift ``h_phi(z, c(t, X))`` from the encoder's context.

        ``context`` ``(B, context_dim)`` at the current time, ``z`` ``(B, D)``.
        """
        if self.posterior != "drift":
            raise ValueError(
                "this model has posterior='marginal'; its posterior drift is implied by the "
                "marginals (sciml_diffusion.sde.matching.implied_posterior_drift)"
            )
        return self.posterior_drift_net(torch.cat([z, context], -1))

    def initial_kl(self, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``KL(N(mu, sigma^2) || p(z_t0))`` summed over the last axis: ``(*, D)`` -> ``(*)``."""
        log_s0 = self.initial_log_std
        var_ratio = (sigma / log_s0.exp()) ** 2
        mean_term = ((mu - self.initial_mean) / log_s0.exp()) ** 2
        return 0.5 * (var_ratio + mean_term - 1.0 - var_ratio.log()).sum(-1)

    def sample_prior_initial(self, n: int, generator: torch.Generator | None = None):
        """``(n, D)`` draws from ``p(z_t0)``."""
        eps = torch.randn(n, self.latent_dim, generator=generator).to(self.initial_mean)
        return self.initial_mean + self.initial_log_std.exp() * eps


def _rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply ``module`` to the rows of ``x`` ``(*, F)`` as a 2-D batch.

    Same result; forward-mode AD of ``linear`` on inputs with more than two dims is slow.
    """
    out = module(x.reshape(-1, x.shape[-1]))
    return out.reshape(*x.shape[:-1], out.shape[-1])


def _softplus_inverse(y: float) -> float:
    return math.log(math.expm1(y))


def _check_choices(latent_dim, data_dim, diffusion, posterior) -> None:
    if int(latent_dim) < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
    if int(data_dim) < 1:
        raise ValueError(f"data_dim must be >= 1, got {data_dim}")
    if diffusion not in ("elementwise", "constant"):
        raise ValueError(f"diffusion must be 'elementwise' or 'constant', got {diffusion!r}")
    if posterior not in ("marginal", "drift"):
        raise ValueError(f"posterior must be 'marginal' or 'drift', got {posterior!r}")
