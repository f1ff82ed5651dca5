r"""Flow past a cylinder in a channel: incompressible Navier–Stokes with no-slip walls.

.. math::

    \partial_t\mathbf{u} + (\mathbf{u}\cdot\nabla)\mathbf{u} = -\nabla p + \nu\Delta\mathbf{u},
    \qquad \nabla\cdot\mathbf{u} = 0,

in a channel with no-slip walls (top, bottom, cylinder), a prescribed inflow on the left
and an outflow (pressure 0) on the right, solved by the D2Q9 lattice Boltzmann method of
:mod:`sciml_diffusion.pdes.lbm` (TRT collision, interpolated bounce-back on the cylinder),
batched in torch on any device.

Two uses:

- :func:`schaefer_turek` runs the DFG benchmark of Schäfer & Turek (1996), "Benchmark
  computations of laminar flow around a cylinder": channel :math:`2.2 \times 0.41`,
  cylinder centre :math:`(0.2, 0.2)`, diameter :math:`D = 0.1`, parabolic inflow of mean
  :math:`\bar U`, :math:`\mathrm{Re} = \bar U D/\nu`. Case 2D-1 (Re = 20, steady):
  :math:`C_D \in [5.57, 5.59]`, :math:`C_L \in [0.0104, 0.0110]`; case 2D-2 (Re = 100,
  periodic): :math:`C_{D,\max} \in [3.22, 3.24]`, :math:`C_{L,\max} \in [0.99, 1.01]`,
  :math:`\mathrm{St} = D f/\bar U \in [0.295, 0.305]`, with
  :math:`C = 2F/(\rho\bar U^2 D)`. It is the verification of the solver.
- :class:`CylinderFlow` generates the "Navier–Stokes with boundary conditions" data of the
  DiffusionPDE / FunDPS benchmark: see its docstring for the layout and what differs
  from their generator.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from sciml_diffusion.fields import Grid
from sciml_diffusion.fields.dataset import FieldDataset
from sciml_diffusion.pdes.base import (
    Variable,
    batch_device,
    batches,
    build_dataset,
    check_count,
    check_positive,
    map_samples,
    resolve_grid,
    sample_generator,
    unpack_fields,
)
from sciml_diffusion.pdes.diffusionpde import cell_centred_grid, is_cell_centred
from sciml_diffusion.pdes.evolution import EvolutionProblem
from sciml_diffusion.pdes.lbm import D2Q9, ChannelLattice

__all__ = ["SCHAEFER_TUREK", "schaefer_turek", "cylinder_fractions", "CylinderFlow"]

#: Schäfer & Turek (1996) reference intervals (lower, upper)
SCHAEFER_TUREK = {
    "2D-1": {"reynolds": 20.0, "cd": (5.57, 5.59), "cl": (0.0104, 0.0110)},
    "2D-2": {
        "reynolds": 100.0,
        "cd_max": (3.22, 3.24),
        "cl_max": (0.99, 1.01),
        "strouhal": (0.295, 0.305),
    },
}

# DFG geometry in physical units
_LENGTH, _HEIGHT, _CENTRE, _DIAMETER = 2.2, 0.41, (0.2, 0.2), 0.1


def cylinder_fractions(centre, radius, coords):
    """``fraction(i)`` for :class:`ChannelLattice`: where links cut a circle.

    Parameters
    ----------
    centre : torch.Tensor (B, 2)
        Circle centres ``(x, y)`` in lattice units (node ``(row r, column c)`` at
        ``(coords[1][c], coords[0][r])``).
    radius : torch.Tensor (B,)
        Radii in lattice units.
    coords : (torch.Tensor (ny,), torch.Tensor (nx,))
        Node positions in lattice units.

    Returns
    -------
    callable giving, for direction ``i``, the fraction ``q`` in ``(0, 1]`` of the link from
    each node along ``c_i`` at which it meets the circle (1/2 where it does not).
    """
    ys, xs = coords
    dx = xs.view(1, 1, -1) - centre[:, 0].view(-1, 1, 1)
    dy = ys.view(1, -1, 1) - centre[:, 1].view(-1, 1, 1)
    r2 = (radius**2).view(-1, 1, 1)

    def fraction(i):
        cx, cy = D2Q9.c[i]
        a = cx * cx + cy * cy
        b = 2 * (cx * dx + cy * dy)
        c = dx * dx + dy * dy - r2
        disc = (b * b - 4 * a * c).clamp_min(0)
        t = (-b - disc.sqrt()) / (2 * a)
        inside = (t > 0) & (t <= 1) & (c > 0)
        return torch.where(inside, t, 0.5)

    return fraction


def _dfg_lattice(
    resolution: int, reynolds: float, velocity: float, device, dtype, kick: float = 0.0
):
    """The DFG channel at ``resolution`` nodes per diameter: lattice, initial populations.

    The initial state is the inflow's Poiseuille profile everywhere (the channel carries
    the full flux from the start: no acoustic slosh between inflow and outflow); ``kick``
    adds a transverse velocity bump ``kick * U`` one diameter behind the cylinder, which
    breaks the symmetry so that shedding starts sooner (it does not change the periodic
    state).
    """
    h = _DIAMETER / resolution
    rows, cols = round(_HEIGHT / h), round(_LENGTH / h)
    if abs(rows * h - _HEIGHT) > 1e-9 or abs(cols * h - _LENGTH) > 1e-9:
        raise ValueError(
            f"resolution {resolution} does not fit the channel: 0.41 / h must be an integer; "
            "use a multiple of 10 nodes per diameter"
        )
    ny, nx = rows + 2, cols  # one solid row below and above: walls halfway between
    ys = torch.arange(ny, dtype=torch.float64, device=device) - 0.5  # fluid row j at j - 1/2
    xs = torch.arange(nx, dtype=torch.float64, device=device) + 0.5
    centre = torch.tensor([[_CENTRE[0] / h, _CENTRE[1] / h]], dtype=torch.float64, device=device)
    radius = torch.tensor([0.5 * resolution], dtype=torch.float64, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    body = ((xx - centre[0, 0]) ** 2 + (yy - centre[0, 1]) ** 2 < radius[0] ** 2).unsqueeze(0)
    solid = body.clone()
    solid[:, 0, :] = True
    solid[:, -1, :] = True
    u_max = 1.5 * velocity
    viscosity = velocity * resolution / reynolds

    def inflow(row):  # row-index units; fluid row j sits at height j - 1/2
        y = (row - 0.5).clamp(0, rows).unsqueeze(0)
        return 4 * u_max * y * (rows - y) / rows**2

    fractions = cylinder_fractions(centre, radius, (ys, xs))
    lattice = ChannelLattice(solid, body, viscosity, inflow, fraction=_only(body, fractions))
    profile = inflow(torch.arange(ny, dtype=torch.float64, device=device))
    ux = torch.where(solid, 0.0, profile.unsqueeze(-1).expand(1, ny, nx)).to(dtype)
    rho = torch.ones_like(ux)
    bump = torch.exp(
        -((xx - centre[0, 0] - resolution) ** 2 + (yy - centre[0, 1]) ** 2) / resolution**2
    )
    uy = torch.where(solid, 0.0, kick * velocity * bump.unsqueeze(0)).to(dtype)
    f = lattice.equilibrium(rho, ux, uy)
    return lattice, f


def _only(body, fractions):
    """Circle fractions on links that hit the body; 1/2 (straight walls) elsewhere."""

    def fraction(i):
        cx, cy = D2Q9.c[i]
        hits = torch.roll(body, shifts=(-cy, -cx), dims=(-2, -1))
        return torch.where(hits, fractions(i), 0.5)

    return fraction


def schaefer_turek(
    case: str = "2D-1",
    resolution: int = 20,
    velocity: float = 0.05,
    time: float | None = None,
    device=None,
    dtype=torch.float64,
    progress: bool = False,
) -> dict:
    """Run a DFG benchmark case and measure drag, lift and (2D-2) the Strouhal number.

    Parameters
    ----------
    case : str
        ``"2D-1"`` (Re = 20, steady) or ``"2D-2"`` (Re = 100, periodic shedding).
    resolution : int
        Lattice nodes per cylinder diameter (a multiple of 10).
    velocity : float
        Mean inflow velocity in lattice units (Mach number ``velocity * sqrt(3)``).
    time : float, optional
        Simulated time in units of ``D / U`` (default 40 for 2D-1, 150 for 2D-2); the
        flow starts as the inflow's Poiseuille profile everywhere.
    device, dtype
        Where and in which precision to run.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict with ``cd``, ``cl`` (2D-1: averages over the last 10 % of the run) or ``cd_max``,
    ``cl_max``, ``strouhal`` (2D-2: over the last third), and the run's ``steps``,
    ``viscosity`` and ``tau`` in lattice units.
    """
    if case not in SCHAEFER_TUREK:
        raise ValueError(f"unknown case {case!r}; choose one of {list(SCHAEFER_TUREK)}")
    reynolds = SCHAEFER_TUREK[case]["reynolds"]
    time = time if time is not None else (40.0 if case == "2D-1" else 150.0)
    kick = 0.0 if case == "2D-1" else 0.5
    lattice, f = _dfg_lattice(resolution, reynolds, velocity, device, dtype, kick)
    steps = int(round(time * resolution / velocity))
    scale = 2.0 / (velocity**2 * resolution)
    coefficients = torch.empty(steps, 2, dtype=torch.float64)
    with torch.no_grad():
        for n in tqdm(range(steps), disable=not progress, desc=f"DFG {case}"):
            f, force = lattice.step(f)
            coefficients[n] = force[0].to(torch.float64) * scale
        if not torch.isfinite(f).all():
            raise ValueError(f"the lattice diverged; lower velocity (now {velocity})")
    result = {
        "case": case,
        "resolution": resolution,
        "velocity": velocity,
        "steps": steps,
        "viscosity": velocity * resolution / reynolds,
        "tau": 3 * velocity * resolution / reynolds + 0.5,
    }
    cd, cl = coefficients[:, 0].numpy(), coefficients[:, 1].numpy()
    if case == "2D-1":
        tail = slice(int(0.9 * steps), steps)
        return {**result, "cd": float(cd[tail].mean()), "cl": float(cl[tail].mean())}
    tail = slice(int(2 * steps / 3), steps)
    period = _period(cl[tail])
    return {
        **result,
        "cd_max": float(cd[tail].max()),
        "cl_max": float(cl[tail].max()),
        "strouhal": resolution / (period * velocity) if period else math.nan,
    }


def _period(signal: np.ndarray) -> float:
    """Mean period (in samples) of an oscillating signal from its upward zero crossings."""
    centred = signal - signal.mean()
    up = np.nonzero((centred[:-1] < 0) & (centred[1:] >= 0))[0]
    if len(up) < 3:
        return 0.0
    exact = up + centred[up] / (centred[up] - centred[up + 1])  # linear interpolation
    return float((exact[-1] - exact[0]) / (len(exact) - 1))


# ---------------------------------------------------------------------- benchmark frames
def _pair(name: str, value) -> tuple[float, float]:
    low, high = (value, value) if np.isscalar(value) else tuple(value)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name} must be a number or a range [low, high], got {value!r}")
    return float(low), float(high)


class CylinderFlow(EvolutionProblem):
    """Impulsively started channel flow past a cylinder: DiffusionPDE's bounded NS data.

    The problem of the "Navier–Stokes with boundary conditions" sets of DiffusionPDE and
    FunDPS, as its generator (a fork of takah29/2d-fluid-simulator by a DiffusionPDE
    author, ``data_gen.py`` with boundary condition 1) defines it: the unit square as
    ``n x n`` cells (``n = 128``), no-slip walls two cells thick along the bottom and top,
    a uniform inflow ``v0`` through the first two columns, an outflow at the last column,
    a cylinder of the cells whose centres lie within ``r`` of ``(cx, cy)`` (cell units,
    the array's first index is x), viscosity ``1/Re`` with ``Re = 150``, fluid at rest at
    ``t = 0``, frames every 0.02 from ``t = 0.001`` (their first step) to 0.201. Each
    sample draws ``v0 ~ U(0.5, 3)``, ``r`` in 5..19, ``cx`` in 30..59, ``cy`` in 30..89
    (integers, at 128 cells; scaled with ``n``). The benchmark's channel is the speed
    ``|u|``; its pair is frame 4 (input) → frame 8 (output); its test case is
    ``cx, cy, r = 41, 63, 10``.

    What differs from their generator: ours is the lattice Boltzmann solver verified on
    the Schäfer–Turek benchmark (incompressible to :math:`O(\\mathrm{Ma}^2)`, Mach
    <= 0.09, the cylinder wall interpolated rather than a staircase); theirs relaxes the
    pressure by two SOR sweeps per step (the flow is far from divergence free), adds
    vorticity confinement (``eps = 5``) and clips speeds at 10. Their outflow forces
    ``u_x >= 0.05``; ours is a pressure outlet.

    Parameters
    ----------
    reynolds : float
        ``1 / viscosity`` on the unit square (their ``Re``).
    inflow, radius, centre_x, centre_y : float or (low, high)
        The inflow speed range, and the cylinder radius and centre ranges in cells of a
        128-cell grid (integers drawn uniformly, inclusive); a number fixes the value.
    final_time : float
        Time from the first to the last frame.
    steps : int
        Saved intervals (``steps + 1`` frames).
    first_frame : float
        Time of the first frame.
    lattice_velocity : float
        The largest inflow speed in lattice units (sets the time step; Mach number
        ``sqrt(3)`` times it).
    input_frame, output_frame : int
        The frames stored as the benchmark pair ``speed_in``, ``speed_out``.
    """

    name = "cylinder"
    variables = (
        Variable("solid", "input", "solid cells (walls and cylinder)"),
        Variable("speed_in", "input", "flow speed at the input frame"),
        Variable("speed_out", "solution", "flow speed at the output frame"),
        Variable("speed", "solution", "flow speed trajectory"),
        Variable("velocity_x", "solution", "x velocity trajectory"),
        Variable("velocity_y", "solution", "y velocity trajectory"),
        Variable("pressure", "solution", "kinematic pressure trajectory"),
    )
    _REFERENCE_CELLS = 128

    def __init__(
        self,
        reynolds: float = 150.0,
        inflow=(0.5, 3.0),
        radius=(5, 19),
        centre_x=(30, 59),
        centre_y=(30, 89),
        final_time: float = 0.2,
        steps: int = 10,
        first_frame: float = 0.001,
        lattice_velocity: float = 0.05,
        input_frame: int = 4,
        output_frame: int = 8,
    ):
        self.reynolds = check_positive("Reynolds number", reynolds)
        self.inflow = _pair("inflow", inflow)
        self.radius = _pair("radius", radius)
        self.centre_x = _pair("centre_x", centre_x)
        self.centre_y = _pair("centre_y", centre_y)
        self.lattice_velocity = check_positive("lattice_velocity", lattice_velocity)
        if self.lattice_velocity > 0.2:
            raise ValueError(
                f"lattice_velocity {lattice_velocity} is too high for an incompressible "
                "lattice Boltzmann flow (Mach > 0.35); use <= 0.2"
            )
        self._set_times(final_time, steps, final_time / steps, spinup=0.0)
        self.first_frame = float(first_frame)
        if not 0 <= self.first_frame:
            raise ValueError(f"first_frame must be >= 0, got {first_frame}")
        for name, frame in (("input_frame", input_frame), ("output_frame", output_frame)):
            if not 0 <= int(frame) <= self.steps:
                raise ValueError(f"{name} {frame} is not a frame in 0..{self.steps}")
        self.input_frame, self.output_frame = int(input_frame), int(output_frame)

    def parameters(self) -> dict:
        return {
            "reynolds": self.reynolds,
            "inflow": list(self.inflow),
            "radius": list(self.radius),
            "centre_x": list(self.centre_x),
            "centre_y": list(self.centre_y),
            "final_time": self.final_time,
            "steps": self.steps,
            "first_frame": self.first_frame,
            "lattice_velocity": self.lattice_velocity,
            "input_frame": self.input_frame,
            "output_frame": self.output_frame,
        }

    @property
    def times(self) -> np.ndarray:
        """Saved times ``first_frame + j * interval``, ``j = 0..steps``."""
        return self.first_frame + self.interval * np.arange(self.steps + 1)

    def default_grid(self, resolution: int) -> Grid:
        """The unit square's ``resolution x resolution`` cell centres."""
        return cell_centred_grid(resolution)

    def check_grid(self, grid: Grid) -> None:
        if not is_cell_centred(grid) or grid.shape[0] != grid.shape[1]:
            raise ValueError(
                f"{self.name} lives on the unit square's n x n cell centres; got {grid}, "
                "pass a resolution"
            )
        if grid.shape[0] < 16:
            raise ValueError(f"{self.name} needs at least 16 cells per side, got {grid.shape}")

    # ------------------------------------------------------------------ samples
    def draw(self, cells: int, generator: torch.Generator) -> tuple[float, float, float, float]:
        """One sample's ``(v0, cx, cy, r)``; positions and radius in cells of ``cells``."""
        u = torch.rand(4, generator=generator, dtype=torch.float64).numpy()
        v0 = self.inflow[0] + u[0] * (self.inflow[1] - self.inflow[0])
        scale = cells / self._REFERENCE_CELLS
        picks = [
            scale * math.floor(lo + w * (hi - lo + 1) - 1e-12) if hi > lo else scale * lo
            for w, (lo, hi) in zip(u[1:], (self.centre_x, self.centre_y, self.radius))
        ]
        return (float(v0), *picks)

    def time_step(self, cells: int) -> tuple[float, int]:
        """Physical time step and steps per ``first_frame`` quantum, for ``cells`` cells.

        The step divides both ``first_frame`` (when > 0) and the frame interval and keeps
        the largest inflow below ``lattice_velocity`` lattice units.
        """
        h = 1.0 / cells
        largest = self.lattice_velocity * h / self.inflow[1]
        quantum = math.gcd(round(self.first_frame * 1e6), round(self.interval * 1e6)) * 1e-6
        quantum = quantum if quantum > 0 else self.interval
        per = math.ceil(quantum / largest - 1e-9)
        return quantum / per, per

    def solve(self, samples: np.ndarray, grid: Grid, device=None, dtype=torch.float64):
        """Integrate a batch of samples ``(B, 4)`` rows ``(v0, cx, cy, r)``.

        Returns
        -------
        dict of ``velocity_x, velocity_y, pressure`` ``(B, steps + 1, n, n)`` and
        ``solid`` ``(B, n, n)`` (torch, on ``device``).
        """
        self.check_grid(grid)
        n = grid.shape[0]
        dt, _ = self.time_step(n)
        h = 1.0 / n
        lattice, solid, inflow, wall = self._lattice(samples, n, dt, device, dtype)
        f = self._start(lattice, samples, n, wall, dt * n, dtype)
        frames = []
        clock = 0
        for t in self.times:
            target = round(t / dt)
            while clock < target:
                f, _ = lattice.step(f)
                clock += 1
            frames.append(self._frame(lattice, f, inflow, wall, h / dt))
        stacked = {key: torch.stack([fr[key] for fr in frames], 1) for key in frames[0]}
        if not all(torch.isfinite(v).all() for v in stacked.values()):
            raise ValueError("the lattice diverged; lower lattice_velocity")
        return {**stacked, "solid": solid}

    def _lattice(self, samples, n, dt, device, dtype):
        """The lattice on columns ``wall..n-1`` (the first ``wall`` columns are the inflow)."""
        samples = torch.as_tensor(np.asarray(samples), dtype=torch.float64, device=device)
        v0, cx, cy, r = samples.unbind(1)
        wall = max(1, round(2 * n / self._REFERENCE_CELLS))
        centres = torch.arange(n, dtype=torch.float64, device=device) + 0.5
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        body = (xx - cx.view(-1, 1, 1)) ** 2 + (yy - cy.view(-1, 1, 1)) ** 2 < r.view(
            -1, 1, 1
        ) ** 2
        solid = body.clone()
        solid[:, :wall, :] = True
        solid[:, n - wall :, :] = True
        scale = dt * n  # physical velocity -> lattice units
        nu = dt * n * n / self.reynolds

        def inflow(y):
            return (v0 * scale).view(-1, 1).expand(-1, y.numel())

        fractions = cylinder_fractions(torch.stack([cx, cy], 1), r, (centres, centres[wall:]))
        sub = (slice(None), slice(None), slice(wall, None))
        lattice = ChannelLattice(
            solid[sub], body[sub], nu, inflow, fraction=_only(body[sub], fractions)
        )
        return lattice, solid, v0, wall

    @staticmethod
    def _start(lattice, samples, n, wall, scale, dtype):
        """Populations of the impulsively started incompressible flow at ``t = 0+``.

        Incompressible flow started from rest carries the inflow's flux everywhere at once:
        the potential flow past the cylinder, :math:`u = v_0(1 - r^2\\cos 2\\theta/
        \\rho^2)`, :math:`v = -v_0 r^2\\sin 2\\theta/\\rho^2` (unbounded; the walls'
        images are neglected), zero in the solid, ``u`` scaled per column to carry the
        inflow's flux. Starting the lattice at rest instead
        would launch a pressure wave that sloshes between inflow and outflow.
        """
        samples = torch.as_tensor(np.asarray(samples), dtype=torch.float64)
        v0, cx, cy, r = (t.view(-1, 1, 1).to(lattice.device) for t in samples.unbind(1))
        c = torch.arange(n, dtype=torch.float64, device=lattice.device) + 0.5
        yy, xx = torch.meshgrid(c, c[wall:], indexing="ij")
        dx, dy = xx - cx, yy - cy
        rho2 = (dx * dx + dy * dy).clamp_min(1e-12)
        ratio = r * r / (rho2 * rho2)
        ux = v0 * scale * (1 - ratio * (dx * dx - dy * dy))
        uy = -v0 * scale * ratio * 2 * dx * dy
        fluid = ~lattice.solid
        ux, uy = torch.where(fluid, ux, 0.0), torch.where(fluid, uy, 0.0)
        inflow = v0 * scale * fluid[..., :1].sum(dim=-2, keepdim=True)
        ux = ux * (inflow / ux.sum(dim=-2, keepdim=True).clamp_min(1e-12))  # the inflow's flux
        ux, uy = ux.to(dtype), uy.to(dtype)
        return lattice.equilibrium(torch.ones_like(ux), ux, uy)

    def _frame(self, lattice, f, v0, wall, to_physical):
        """Physical velocity and pressure on the full ``n x n`` cells of one state."""
        rho, ux, uy = lattice.moments(f)
        fluid = ~lattice.solid
        ux = torch.where(fluid, ux, 0.0) * to_physical
        uy = torch.where(fluid, uy, 0.0) * to_physical
        pressure = torch.where(fluid, (rho - 1.0) / 3.0, 0.0) * to_physical**2
        inlet_fluid = fluid[..., :1].expand(-1, -1, wall)
        inlet = torch.where(inlet_fluid, v0.view(-1, 1, 1).to(ux.dtype), 0.0)
        zero = torch.zeros_like(inlet)
        return {
            "velocity_x": torch.cat([inlet, ux], -1),
            "velocity_y": torch.cat([zero, uy], -1),
            "pressure": torch.cat([pressure[..., :1].expand(-1, -1, wall), pressure], -1),
        }

    # ------------------------------------------------------------------ data sets
    def generate(
        self,
        n: int,
        grid: Grid | int,
        seed: int = 0,
        *,
        workers: int = 1,
        batch_size: int = 8,
        device=None,
        dtype=torch.float64,
        progress: bool = False,
    ) -> FieldDataset:
        """Generate ``n`` trajectories (see the class docstring for the layout).

        Parameters
        ----------
        n : int
            Number of samples; sample ``i`` draws ``(v0, cx, cy, r)`` from
            ``torch.Generator().manual_seed(seed + i)``.
        grid : Grid or int
            Cells per side (``cell_centred_grid``).
        workers, batch_size, device, dtype, progress
            As :meth:`EvolutionProblem.generate`.

        Returns
        -------
        FieldDataset with ``speed, velocity_x, velocity_y, pressure`` ``(sample, time, y,
        x)``, the pair ``speed_in, speed_out`` and ``solid`` ``(sample, y, x)``, and the
        per-sample ``inflow``, ``centre_x``, ``centre_y``, ``radius`` (cells).
        """
        n = check_count(n)
        grid = resolve_grid(self, grid)
        self.check_grid(grid)
        starts, counts = batches(n, batch_size)
        device = batch_device(device, workers)
        cells = grid.shape[0]
        draws = np.array([self.draw(cells, sample_generator(seed, i)) for i in range(n)])
        tasks = [
            (self, grid, draws[s : s + c], str(device), dtype) for s, c in zip(starts, counts)
        ]
        parts = map_samples(_run_batch, tasks, workers, progress, self.name, weights=counts)
        fields = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        fields["speed_in"] = fields["speed"][:, self.input_frame]
        fields["speed_out"] = fields["speed"][:, self.output_frame]
        attrs = {**self.recipe_attrs(seed, grid), "dt_used": self.time_step(cells)[0]}
        data = build_dataset(fields, self.variables, grid, attrs, time=self.times)
        ds = data.xarray
        for k, (name, units) in enumerate(
            (("inflow", "1"), ("centre_x", "cell"), ("centre_y", "cell"), ("radius", "cell"))
        ):
            ds[name] = xr.DataArray(draws[:, k], dims=("sample",), attrs={"units": units})
        return FieldDataset(ds)

    # ------------------------------------------------------------------ residual
    def residual(self, fields, grid: Grid) -> torch.Tensor:
        """Discrete divergence ``du/dx + dv/dy`` of velocity frames, in 1/time.

        Central differences at the cells whose four neighbours are fluid (0 elsewhere);
        for an incompressible flow it vanishes up to the scheme's error.

        Parameters
        ----------
        fields : torch.Tensor (B, T, 2, n, n) or (B, 2, n, n) with channels
            ``(velocity_x, velocity_y)``, or a mapping (``solid`` optional: cells where
            both components are 0 count as solid otherwise).
        grid : Grid
            The cell-centred grid.

        Returns
        -------
        torch.Tensor (B, [T,] n - 2, n - 2)
        """
        self.check_grid(grid)
        parts = unpack_fields(fields, ("velocity_x", "velocity_y"), grid.ndim)
        u, v = parts["velocity_x"], parts["velocity_y"]
        h = grid.spacing[0]
        div = (u[..., 1:-1, 2:] - u[..., 1:-1, :-2] + v[..., 2:, 1:-1] - v[..., :-2, 1:-1]) / (
            2 * h
        )
        moving = (u != 0) | (v != 0)
        inner = (
            moving[..., 1:-1, 1:-1]
            & moving[..., 1:-1, 2:]
            & moving[..., 1:-1, :-2]
            & moving[..., 2:, 1:-1]
            & moving[..., :-2, 1:-1]
        )
        return torch.where(inner, div, 0.0)


def _run_batch(task: tuple) -> dict:
    problem, grid, draws, device, dtype = task
    with torch.no_grad():
        out = problem.solve(draws, grid, device=device, dtype=dtype)
    out = {k: v.to("cpu", torch.float32).numpy() for k, v in out.items()}
    out["speed"] = np.hypot(out["velocity_x"], out["velocity_y"])
    out["solid"] = out["solid"].astype(np.float32)
    return out
