r"""Brownian motion drawn member by member, so that a forecast member does not depend on its
batch.

torchsde's :class:`~torchsde.BrownianInterval` draws the whole ``(B, D)`` path from one
entropy: a member's noise then changes with the batch it is solved in (its size, its
other rows, the interval's end). :class:`MemberBrownian` gives row ``b`` its own
``torch.Generator``: a fixed-step solver (``euler``) asks for the increments of
consecutive intervals :math:`[t_k, t_{k+1}]`, and the row's :math:`k`-th increment is
:math:`W_{t_{k+1}} - W_{t_k} = \sqrt{t_{k+1} - t_k}\, z_k` with :math:`z_k \sim N(0, I_D)`
the row's :math:`k`-th standard normal draw, which is the exact law of Brownian increments.
The solver stays torchsde's (``torchsde.sdeint(..., bm=MemberBrownian(...))``).

:func:`member_rows` makes the generators: row ``(s, i)`` (sequence ``s``, member ``i``,
rows sequence-major) is seeded from (seed, stream, ``s``, ``i``) only, so the same member of
the same sequence gets the same draws in any batch and on any rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torchsde

from sciml_diffusion.diffusion.prior import member_generators

__all__ = ["MemberBrownian", "member_rows", "STREAMS"]

#: independent uses of a member's randomness, each from its own generator
STREAMS = {"start": 0, "posterior": 1, "forecast": 2, "observation": 3}


def member_rows(
    seed: int, sequences: Iterable[int], members: range, stream: str
) -> list[torch.Generator]:
    """One generator per (sequence, member) row, rows ``s * len(members) + i``.

    Parameters
    ----------
    seed : int
    sequences : iterable of int
        Global indices of the sequences (their place in the whole data set, not the batch).
    members : range
        The member indices (a rank's :func:`~sciml_diffusion.distributed.shard`).
    stream : str
        One of :data:`STREAMS`: the start state, the posterior path, the forecast path and
        the observation noise draw from separate generators, so the number of draws one of
        them takes (which may depend on the batch) does not shift the others.
    """
    base = (int(seed) * len(STREAMS) + STREAMS[stream]) * 1_000_003
    out = []
    for s in sequences:
        out.extend(member_generators(base + int(s), len(members), start=members.start))
    return out


class MemberBrownian(torchsde.BaseBrownian):
    """Brownian motion ``(B, D)`` from ``t0``, row ``b`` drawn from ``generators[b]``.

    Answers the queries of a fixed-step solver: increments over consecutive intervals,
    each starting where the last one ended (anything else is an error).

    Parameters
    ----------
    t0 : float
        Start time.
    size : tuple ``(B, D)``
    generators : list of B torch.Generator
    dtype, device :
        Of the increments.
    chunk : int
        Steps drawn at once per row (a row's draws are the same for any ``B``).
    """

    def __init__(self, t0, size, generators, dtype=torch.float32, device=None, chunk=256):
        if len(size) != 2 or len(generators) != size[0]:
            raise ValueError(f"need one generator per row of size {tuple(size)}")
        self._t, self._size = float(t0), torch.Size(size)
        self._generators, self._chunk = list(generators), int(chunk)
        self._dtype, self._device = dtype, torch.device(device or "cpu")
        self._draws, self._used = None, self._chunk

    def __call__(self, ta, tb=None, return_U=False, return_A=False):
        if tb is None or return_U or return_A:
            raise ValueError("MemberBrownian gives increments W(tb) - W(ta) only")
        ta, tb = float(ta), float(tb)
        if not math.isclose(ta, self._t, rel_tol=1e-9, abs_tol=1e-12) or tb < ta:
            raise ValueError(
                f"MemberBrownian answers consecutive intervals only: asked [{ta}, {tb}] after "
                f"one ending at {self._t}; use a fixed-step solver such as euler"
            )
        self._t = tb
        return math.sqrt(tb - ta) * self._next()

    def _next(self) -> torch.Tensor:
        if self._used == self._chunk:
            shape = (self._chunk, self._size[1])
            draws = [torch.randn(shape, generator=g, device=g.device) for g in self._generators]
            self._draws = torch.stack(draws, 1).to(self._device, self._dtype)
            self._used = 0
        self._used += 1
        return self._draws[self._used - 1]

    def __repr__(self) -> str:
        return f"MemberBrownian(t={self._t}, size={tuple(self._size)})"

    @property
    def dtype(self):
        return self._dtype

    @property
    def device(self):
        return self._device

    @property
    def shape(self):
        return self._size

    @property
    def levy_area_approximation(self):
        return "none"
