r"""Lattice Boltzmann D2Q9 for incompressible channel flow past obstacles, batched in torch.

Populations :math:`f_i(\mathbf{x}, t)` on the lattice velocities :math:`\mathbf{c}_i`
(D2Q9, weights :math:`w_i`, sound speed :math:`c_s^2 = 1/3`) evolve by collision and
streaming, :math:`f_i(\mathbf{x} + \mathbf{c}_i, t + 1) = f_i^*(\mathbf{x}, t)`, and recover
the incompressible Navier–Stokes equations with viscosity :math:`\nu = (\tau - 1/2)/3` up to
:math:`O(\mathrm{Ma}^2)` compressibility errors (Krüger et al. 2017, *The Lattice Boltzmann
Method*). Everything is in lattice units (spacing 1, step 1).

- Collision: two-relaxation-time (TRT, Ginzburg 2008) with magic parameter
  :math:`\Lambda = 3/16`, which puts a halfway bounce-back wall exactly halfway between
  the nodes for every viscosity.
- Solid walls: the interpolated bounce-back of Bouzidi, Firdaouss & Lallemand (2001),
  second order on curved walls: for a link from fluid node :math:`\mathbf{x}` along
  :math:`\mathbf{c}_i` cut by the wall at fraction :math:`q`,
  :math:`f_{\bar i}(\mathbf{x}) = 2q f_i^*(\mathbf{x}) + (1 - 2q) f_i^*(\mathbf{x} -
  \mathbf{c}_i)` for :math:`q < 1/2` and :math:`\frac{1}{2q} f_i^*(\mathbf{x}) +
  \frac{2q - 1}{2q} f_{\bar i}^*(\mathbf{x})` otherwise (plain bounce-back where
  :math:`\mathbf{x} - \mathbf{c}_i` is not fluid).
- Inflow (left, halfway before column 0): bounce-back from a wall moving with the inflow
  velocity, :math:`f_{\bar i} = f_i^* - 6 w_i \rho\,\mathbf{c}_i\cdot\mathbf{u}_w`
  with the density :math:`\rho` of the node (so the velocity, not the momentum, is
  imposed where the pressure drop raises the density).
- Outflow (right, halfway after the last column): anti-bounce-back at density 1 (pressure
  0), :math:`f_{\bar i} = -f_i^* + 2 w_i [1 + 4.5(\mathbf{c}_i\cdot\mathbf{u}_w)^2 -
  1.5|\mathbf{u}_w|^2]`, with the wall velocity extrapolated from the last two columns.
- Force on an obstacle: momentum exchange over its cut links,
  :math:`\mathbf{F} = \sum \mathbf{c}_i [f_i^*(\mathbf{x}) + f_{\bar i}(\mathbf{x}, t+1)]`.

Streaming and every boundary rule except the outflow are linear in the post-collision
populations, so they are precomputed once as gathers over flat index lists: a step costs a
few dozen whole-array operations however complex the geometry. Populations are
``(B, 9, ny, nx)`` (y rows, x columns; CF order), float32 or float64, on any device; every
sample of a batch may have its own obstacle.
"""

from __future__ import annotations

import torch

__all__ = ["D2Q9", "ChannelLattice", "relaxation_time"]


class D2Q9:
    """Lattice velocities ``c`` (9, 2) as (x, y), weights ``w`` (9,), opposites ``opp``."""

    c = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, 1), (-1, -1), (1, -1))
    w = (4 / 9,) + (1 / 9,) * 4 + (1 / 36,) * 4
    opp = (0, 3, 4, 1, 2, 7, 8, 5, 6)


def relaxation_time(viscosity: float) -> float:
    """``tau = 3 nu + 1/2`` for a lattice viscosity ``nu``."""
    return 3.0 * viscosity + 0.5


def _shift(field: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``out[x] = field[x - (dx, dy)]`` over the last two dims (periodic roll)."""
    return torch.roll(field, shifts=(dy, dx), dims=(-2, -1))


class ChannelLattice:
    """A batched D2Q9 TRT lattice: solid nodes with wall fractions, inflow, outflow.

    Parameters
    ----------
    solid : torch.Tensor (B, ny, nx) bool
        Solid nodes (walls and obstacles). Column 0 is next to the inflow, the last column
        next to the outflow.
    body : torch.Tensor (B, ny, nx) bool
        Solid nodes of the obstacle whose force :meth:`step` returns (within ``solid``).
    viscosity : float
        Lattice viscosity ``nu`` (``tau = 3 nu + 1/2``).
    inflow : callable
        ``inflow(y) -> (B, len(y))``: x-velocity of the inflow wall at heights ``y``
        (row-index units, float64); diagonal links cross the wall between rows.
    fraction : callable, optional
        ``fraction(i) -> q`` (B, ny, nx): wall fraction of the link from each node along
        direction ``i`` (used where that link ends in a solid; default 1/2, a staircase
        wall halfway between nodes).
    magic : float
        TRT parameter ``Lambda`` (3/16).
    """

    def __init__(self, solid, body, viscosity, inflow, fraction=None, magic=3 / 16):
        self.solid = solid.bool()
        self.shape = tuple(solid.shape)
        self.device = solid.device
        self.omega_plus = 1.0 / relaxation_time(viscosity)
        self.omega_minus = 1.0 / (magic / (1.0 / self.omega_plus - 0.5) + 0.5)
        self._c = torch.tensor(D2Q9.c, dtype=torch.float64, device=self.device)  # (9, 2)
        self._w = torch.tensor(D2Q9.w, dtype=torch.float64, device=self.device).view(1, 9, 1, 1)
        self._fluid9 = (~self.solid).unsqueeze(1).expand(-1, 9, -1, -1)
        self._opp = list(D2Q9.opp)
        self._stream = self._stream_index()
        self._build_links(body.bool(), inflow, fraction)

    # ------------------------------------------------------------------ geometry
    def _flat(self) -> torch.Tensor:
        b, ny, nx = self.shape
        return torch.arange(b * 9 * ny * nx, device=self.device).view(b, 9, ny, nx)

    def _stream_index(self) -> torch.Tensor:
        """Flat source index of every population after streaming."""
        idx = self._flat()
        return torch.stack([_shift(idx[:, i], cx, cy) for i, (cx, cy) in enumerate(D2Q9.c)], 1)

    def _build_links(self, body, inflow, fraction) -> None:
        idx = self._flat()
        fluid = ~self.solid
        parts = {k: [] for k in ("target", "own", "back", "opp", "w_own", "w_back", "w_opp")}
        force_parts = []
        for i in range(1, 9):
            cx, cy = D2Q9.c[i]
            j = D2Q9.opp[i]
            mask = fluid & _shift(self.solid, -cx, -cy)
            mask[..., :, 0] &= cx >= 0  # links through the inflow / outflow planes
            mask[..., :, -1] &= cx <= 0
            q = torch.full(self.shape, 0.5, dtype=torch.float64, device=self.device)
            if fraction is not None:
                q = fraction(i).to(torch.float64)
            upstream = _shift(fluid, cx, cy)
            upstream[..., :, 0] &= cx <= 0
            upstream[..., :, -1] &= cx >= 0
            near = q < 0.5
            w_own = torch.where(near, torch.where(upstream, 2 * q, 1.0), 1 / (2 * q))
            w_back = torch.where(near & upstream, 1 - 2 * q, 0.0)
            w_opp = torch.where(near, 0.0, (2 * q - 1) / (2 * q))
            sel = mask.nonzero(as_tuple=True)
            back = _shift(idx[:, i], cx, cy)
            self._append(
                parts,
                idx[:, j][sel],
                idx[:, i][sel],
                back[sel],
                idx[:, j][sel],
                w_own[sel],
                w_back[sel],
                w_opp[sel],
            )
            hit = (mask & _shift(body, -cx, -cy)).nonzero(as_tuple=True)
            force_parts.append((i, hit))
        inflow_parts = []
        for i in (3, 6, 7):  # c_x = -1: links from column 0 into the moving inflow wall
            cx, cy = D2Q9.c[i]
            j = D2Q9.opp[i]
            rows = fluid[..., :, 0].nonzero(as_tuple=True)
            sel = (rows[0], rows[1], torch.zeros_like(rows[1]))
            heights = torch.arange(self.shape[1], dtype=torch.float64, device=self.device)
            wall = inflow(heights + 0.5 * cy).to(torch.float64).expand(self.shape[0], -1)
            const = -6.0 * D2Q9.w[i] * cx * wall[rows]
            inflow_parts.append((idx[:, j][sel], idx[:, i][sel], const, rows[0], rows[1]))
        self._inflow_links = tuple(torch.cat(v) for v in zip(*inflow_parts))
        self._links = {k: torch.cat(v) for k, v in parts.items()}
        self._force_links = self._force_index(force_parts, idx)

    @staticmethod
    def _append(parts, target, own, back, opp, w_own, w_back, w_opp) -> None:
        for key, value in zip(
            ("target", "own", "back", "opp", "w_own", "w_back", "w_opp"),
            (target, own, back, opp, w_own, w_back, w_opp),
        ):
            parts[key].append(value)

    def _force_index(self, force_parts, idx):
        own, target, sample, cx, cy = [], [], [], [], []
        for i, hit in force_parts:
            j = D2Q9.opp[i]
            own.append(idx[:, i][hit])
            target.append(idx[:, j][hit])
            sample.append(hit[0])
            cx.append(torch.full_like(hit[0], D2Q9.c[i][0], dtype=torch.float64))
            cy.append(torch.full_like(hit[0], D2Q9.c[i][1], dtype=torch.float64))
        return tuple(torch.cat(v) for v in (own, target, sample, cx, cy))

    # ------------------------------------------------------------------ moments
    def equilibrium(self, rho: torch.Tensor, ux: torch.Tensor, uy: torch.Tensor) -> torch.Tensor:
        """Second-order equilibrium ``(B, 9, ny, nx)`` from ``rho, ux, uy`` ``(B, ny, nx)``."""
        dtype = rho.dtype  # in-place arithmetic: large temporaries are what costs on a CPU
        cu = torch.einsum("id,bdyx->biyx", 3.0 * self._c.to(dtype), torch.stack([ux, uy], 1))
        base = (1.0 - 1.5 * (ux * ux + uy * uy)).unsqueeze(1)
        feq = cu.mul(0.5).add_(1.0).mul_(cu).add_(base)
        return feq.mul_(self._w.to(dtype)).mul_(rho.unsqueeze(1))

    def moments(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Density and velocity ``(B, *spatial)`` of populations ``(B, 9, *spatial)``."""
        rho = f.sum(dim=1)
        jx = f[:, 1] + f[:, 5] + f[:, 8] - f[:, 3] - f[:, 6] - f[:, 7]
        jy = f[:, 2] + f[:, 5] + f[:, 6] - f[:, 4] - f[:, 7] - f[:, 8]
        return rho, jx / rho, jy / rho

    def rest(self, dtype=torch.float64) -> torch.Tensor:
        """Populations at rest, ``rho = 1, u = 0``: ``(B, 9, ny, nx)``."""
        return self._w.to(dtype).expand(self.shape[0], 9, *self.shape[1:]).clone()

    # ------------------------------------------------------------------ time step
    def collide(self, f: torch.Tensor) -> torch.Tensor:
        """TRT collision (``f*``) everywhere; solid nodes are reset to rest."""
        rho, ux, uy = self.moments(f)
        neq = self.equilibrium(rho, ux, uy).sub_(f).neg_()
        neq_opp = neq[:, self._opp]
        plus, minus = 0.5 * self.omega_plus, 0.5 * self.omega_minus
        post = torch.add(f, neq, alpha=-(plus + minus)).add_(neq_opp, alpha=-(plus - minus))
        post.masked_fill_(~self._fluid9, 0.0)
        return post.add_(self._w.to(f.dtype) * ~self._fluid9)

    def step(
        self, f: torch.Tensor, inflow_scale: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One collide-stream-boundary step: ``(f, force)``, force ``(B, 2)`` on the body.

        ``inflow_scale`` multiplies the inflow velocity (a start-up ramp).
        """
        post = self.collide(f).reshape(-1)
        new = post[self._stream.reshape(-1)]
        links = self._links
        dtype = post.dtype
        new[links["target"]] = (
            links["w_own"].to(dtype) * post[links["own"]]
            + links["w_back"].to(dtype) * post[links["back"]]
            + links["w_opp"].to(dtype) * post[links["opp"]]
        )
        target, own, const, sample, row = self._inflow_links
        rho = post.view(f.shape)[..., 0].sum(dim=1)  # (B, ny): density next to the inflow
        new[target] = post[own] + (inflow_scale * const.to(dtype)) * rho[sample, row]
        own, target, sample, cx, cy = self._force_links
        exchange = post[own] + new[target]
        force = torch.zeros(self.shape[0], 2, dtype=dtype, device=post.device)
        force[:, 0].index_add_(0, sample, cx.to(dtype) * exchange)
        force[:, 1].index_add_(0, sample, cy.to(dtype) * exchange)
        post, new = post.view(f.shape), new.view(f.shape)
        self._outflow(post, new)
        return new, force

    def _outflow(self, post: torch.Tensor, new: torch.Tensor) -> None:
        _, ux, uy = self.moments(post[..., -2:])  # collision keeps rho and u
        uwx = 1.5 * ux[..., -1] - 0.5 * ux[..., 0]
        uwy = 1.5 * uy[..., -1] - 0.5 * uy[..., 0]
        fluid = ~self.solid[..., :, -1]
        usq = 1.5 * (uwx * uwx + uwy * uwy)
        for i in (1, 5, 8):  # c_x = +1: links from the last column into the outflow plane
            cx, cy = D2Q9.c[i]
            cu = 3.0 * (cx * uwx + cy * uwy)
            value = -post[:, i, :, -1] + 2 * D2Q9.w[i] * (1.0 + 0.5 * cu * cu - usq)
            j = D2Q9.opp[i]
            new[:, j, :, -1] = torch.where(fluid, value, new[:, j, :, -1])
