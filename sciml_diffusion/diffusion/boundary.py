r"""Per-variable boundary behaviour: variables pinned to a value on the boundary.

A variable with a Dirichlet condition (Darcy's pressure, :math:`u = 0` on
:math:`\partial\Omega`) is known exactly at the boundary nodes, so the denoiser need not learn
it: its output is replaced there by the known value,

.. math:: D(x, \sigma)_c = u_c^\partial \quad \text{at the boundary nodes},

for every pinned channel ``c``. In training the loss is then zero there; in sampling every
solver ends on a denoiser output (the last step to :math:`\sigma = 0` returns
:math:`D`), so samples hold the value exactly. The boundary nodes are the first and last
nodes of every bounded (non-periodic) axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["boundary_mask", "pin_boundary"]


def boundary_mask(shape: Sequence[int], periodic: Sequence[bool], device=None) -> torch.Tensor:
    """Boolean tensor of ``shape``: True on the end nodes of every bounded axis."""
    mask = torch.zeros(tuple(shape), dtype=torch.bool, device=device)
    for axis, (n, per) in enumerate(zip(shape, periodic)):
        if per:
            continue
        index = [slice(None)] * len(shape)
        for end in (0, n - 1):
            index[axis] = end
            mask[tuple(index)] = True
    return mask


def pin_boundary(
    x: torch.Tensor, pinned: Sequence[tuple[int, float]], periodic: Sequence[bool]
) -> torch.Tensor:
    """``x (B, C, *spatial)`` with channel ``c`` set to ``value`` on the boundary nodes.

    Parameters
    ----------
    pinned : sequence of ``(channel, value)``
        Values in the units of ``x`` (normalised, inside a prior).
    periodic : sequence of bool
        Per spatial axis; periodic axes have no boundary.
    """
    if not pinned:
        return x
    spatial = x.shape[2:]
    where = boundary_mask(spatial, periodic, device=x.device)
    channels = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)
    values = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
    for channel, value in pinned:
        channels[int(channel)] = True
        values[int(channel)] = float(value)
    shape = (1, -1) + (1,) * len(spatial)
    mask = channels.reshape(shape) & where
    return torch.where(mask, values.reshape(shape), x)
