r"""A conditional Fourier neural operator: the denoiser backbone ``F(x, c_noise)``.

Built from neuraloperator's layers (Li et al. 2021, "Fourier neural operator"): a lifting
:class:`ChannelMLP`, ``L`` blocks, a projection :class:`ChannelMLP`. Block ``l`` maps

.. math:: h \leftarrow h + \mathrm{MLP}_l\Big(\mathrm{gelu}\big((1 + \gamma_l(e))
          \odot (K_l h + W_l h) + \beta_l(e)\big)\Big),

with :math:`K_l` a :class:`SpectralConv` (learned weights on the lowest Fourier modes, so
the same weights act on any grid), :math:`W_l` a pointwise linear map, and FiLM
(Perez et al. 2018) scale/shift :math:`\gamma_l, \beta_l` computed per sample from an
embedding :math:`e` of the noise level: sinusoidal features of :math:`c_\mathrm{noise}`
followed by a small MLP. Each sample of a batch gets its own noise level, which
neuraloperator 2.0's ``ada_in`` normalisation (one embedding per batch) cannot express.

The input is the noisy field, optional conditioning channels (a coefficient field, a
previous frame, a mask) and the node coordinates scaled to ``[0, 1]`` per axis.
Spectral convolutions run in float32 even under bf16 autocast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConditionalFNO", "NoiseLevelEmbedding"]


class NoiseLevelEmbedding(nn.Module):
    """Sinusoidal features of a scalar per sample, then a two-layer MLP.

    Parameters
    ----------
    dim : int
        Output width.
    frequencies : int
        Number of sinusoid frequencies, log-spaced in ``[0.1, 30]`` rad per unit.

    Maps ``(B,)`` to ``(B, dim)``.
    """

    def __init__(self, dim: int, frequencies: int = 16):
        super().__init__()
        self.register_buffer("freqs", torch.logspace(-1, math.log10(30.0), frequencies))
        self.mlp = nn.Sequential(
            nn.Linear(2 * frequencies + 1, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU()
        )

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        angles = c_noise.float()[:, None] * self.freqs[None, :]
        features = torch.cat([angles.cos(), angles.sin(), c_noise.float()[:, None]], dim=1)
        return self.mlp(features)


class _FiLMBlock(nn.Module):
    def __init__(self, width, n_modes, embed_dim, mlp_ratio):
        super().__init__()
        from neuralop.layers.channel_mlp import ChannelMLP
        from neuralop.layers.spectral_convolution import SpectralConv

        self.spectral = SpectralConv(width, width, n_modes)
        self.pointwise = ChannelMLP(width, width, n_layers=1, n_dim=len(n_modes))
        self.film = nn.Linear(embed_dim, 2 * width)
        self.mlp = ChannelMLP(width, width, hidden_channels=mlp_ratio * width, n_dim=len(n_modes))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=h.device.type, enabled=False):
            spectral = self.spectral(h.float())
        y = spectral + self.pointwise(h)
        scale, shift = self.film(emb).reshape(emb.shape[0], 2, -1, *([1] * (h.ndim - 2))).unbind(1)
        y = F.gelu(y * (1 + scale) + shift)
        return h + self.mlp(y)


class ConditionalFNO(nn.Module):
    """Fourier neural operator with per-sample FiLM conditioning on the noise level.

    Parameters
    ----------
    channels : int
        Channels of the field ``x`` (and of the output).
    n_modes : sequence of int
        Fourier modes kept per spatial axis; its length sets the number of spatial dims.
    width : int
        Hidden channels.
    n_layers : int
        Number of FiLM-FNO blocks.
    cond_channels : int
        Extra conditioning channels concatenated to the input (0 for none).
    embed_dim : int, optional
        Width of the noise-level embedding (default ``4 * width``).
    mlp_ratio : int
        Hidden width of each block's channel MLP, in multiples of ``width``.
    positional : bool
        Append node coordinates scaled to ``[0, 1]`` (neuraloperator's ``GridEmbeddingND``
        convention when no grid is passed).
    domain : sequence of (low, high), optional
        Physical bounds the coordinates of a passed grid are scaled by (default: that
        grid's own bounds). Fixing it to the training domain keeps the coordinates of
        sub-grids and finer grids consistent.

    Forward: ``x (B, channels, *spatial)``, ``c_noise (B,)``, ``cond (B, cond_channels,
    *spatial)``, ``grid`` (optional :class:`~sciml_diffusion.fields.Grid`) ->
    ``(B, channels, *spatial)``.
    """

    def __init__(
        self,
        channels: int,
        n_modes: Sequence[int] = (12, 12),
        width: int = 32,
        n_layers: int = 4,
        cond_channels: int = 0,
        embed_dim: int | None = None,
        mlp_ratio: int = 2,
        positional: bool = True,
        domain: Sequence[Sequence[float]] | None = None,
    ):
        super().__init__()
        from neuralop.layers.channel_mlp import ChannelMLP
        from neuralop.layers.embeddings import GridEmbeddingND

        n_modes = tuple(int(m) for m in n_modes)
        self.ndim = len(n_modes)
        if self.ndim not in (1, 2, 3):
            raise ValueError(f"n_modes must have 1, 2 or 3 entries (one per axis), got {n_modes}")
        self.channels, self.cond_channels, self.positional = channels, cond_channels, positional
        self.domain = None if domain is None else tuple(tuple(map(float, b)) for b in domain)
        if self.domain is not None and len(self.domain) != self.ndim:
            raise ValueError(f"domain needs {self.ndim} (low, high) pairs, got {domain}")
        embed_dim = embed_dim or 4 * width
        in_channels = channels + cond_channels
        self.grid_embedding = GridEmbeddingND(in_channels, self.ndim, [[0.0, 1.0]] * self.ndim)
        lifted = in_channels + (self.ndim if positional else 0)
        self.embedding = NoiseLevelEmbedding(embed_dim)
        self.lifting = ChannelMLP(lifted, width, hidden_channels=2 * width, n_dim=self.ndim)
        self.blocks = nn.ModuleList(
            _FiLMBlock(width, n_modes, embed_dim, mlp_ratio) for _ in range(n_layers)
        )
        self.projection = ChannelMLP(width, channels, hidden_channels=2 * width, n_dim=self.ndim)

    def forward(self, x, c_noise, cond=None, grid=None) -> torch.Tensor:
        self._check(x, cond)
        h = x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=1)
        if self.positional:
            h = self._with_coordinates(h, grid)
        emb = self.embedding(c_noise.reshape(-1).expand(x.shape[0]))
        h = self.lifting(h)
        for block in self.blocks:
            h = block(h, emb)
        return self.projection(h)

    def _with_coordinates(self, h, grid):
        if grid is None:
            return self.grid_embedding(h)
        if grid.shape != tuple(h.shape[2:]):
            raise ValueError(f"grid shape {grid.shape} does not match the field's {h.shape[2:]}")
        if grid.ndim != self.ndim:
            raise ValueError(
                f"a {grid.ndim}-D grid was passed to a backbone for {self.ndim}-D fields"
            )
        bounds = self.domain if self.domain is not None else grid.bounds
        low = torch.tensor([b[0] for b in bounds], dtype=h.dtype, device=h.device)
        length = torch.tensor([b[1] - b[0] for b in bounds], dtype=h.dtype, device=h.device)
        shape = (-1,) + (1,) * grid.ndim
        mesh = (grid.mesh(h.dtype, h.device) - low.reshape(shape)) / length.reshape(shape)
        return torch.cat([h, mesh.expand(h.shape[0], *mesh.shape)], dim=1)

    def _check(self, x, cond):
        if x.ndim != self.ndim + 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"expected a field (batch, {self.channels}, <{self.ndim} spatial dims>), "
                f"got shape {tuple(x.shape)}"
            )
        if self.cond_channels and (cond is None or cond.shape[1] != self.cond_channels):
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"this backbone needs {self.cond_channels} cond channels, got {got}")
        if not self.cond_channels and cond is not None:
            raise ValueError("this backbone takes no conditioning channels (cond_channels=0)")
        if cond is not None and tuple(cond.shape[2:]) != tuple(x.shape[2:]):
            raise ValueError(f"cond shape {tuple(cond.shape)} does not match x {tuple(x.shape)}")
