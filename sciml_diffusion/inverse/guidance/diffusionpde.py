r"""The DiffusionPDE guidance schedule (Huang et al. 2024, "DiffusionPDE: generative
PDE-solving under partial observation"), kept as the baseline preset.

After each Heun step, with :math:`\hat x_0 = D(x_i, \sigma_i)`,

.. math::
    L_v = \lVert s_v \odot (y_v - A_v(\hat x_0)) \rVert_2, \qquad
    L_\mathrm{pde} = \tfrac{1}{N} \lVert h^2 R(\hat x_0) \rVert_2,

    x_{i+1} \leftarrow \begin{cases}
      x_{i+1} - \sum_v \zeta_v \nabla_{x_i} L_v & i \le 0.8\,N_\mathrm{steps} \\
      x_{i+1} - 0.1 \sum_v \zeta_v \nabla_{x_i} L_v - \zeta_\mathrm{pde}
        \nabla_{x_i} L_\mathrm{pde} & \text{otherwise,}
    \end{cases}

the published schedule (observation guidance for the first 80 % of the steps, then a
tenth of it plus PDE guidance), with 2000 Heun steps by default. :math:`s_v` converts a
normalised misfit to physical units (the published losses are physical: their Darcy
weights are :math:`\zeta_a = 5` when ``a`` is observed and :math:`\zeta_u = 5000` when
``u`` is, about ``20 / std(v)`` each, the default here), and :math:`h^2 R` is the residual
scaled by the squared node spacing, the scale of the published finite-difference residual
(which omits the :math:`1/h^2`), with the published :math:`\zeta_\mathrm{pde} = 100`.
No function-space preconditioning by default (the published model uses white noise).
"""

from __future__ import annotations

import math

import torch

from sciml_diffusion.inverse.guidance.base import Guidance, PDETerm, _weight

__all__ = ["DiffusionPDE"]


class DiffusionPDE(Guidance):
    """The DiffusionPDE preset.

    Parameters
    ----------
    measurement : Measurement
    steps : int
        Number of sampler steps (the 80 % switch is at step ``0.8 * steps``).
    pde : PDETerm, optional
        Residual of the problem; without it the PDE term is off.
    obs_weight : float or mapping variable -> float, optional
        :math:`\\zeta_v` for physical-unit losses; default ``20 / std(v)``.
    pde_weight : float
        :math:`\\zeta_\\mathrm{pde}`.
    switch_fraction, late_obs_factor : float
        0.8 and 0.1 in the published schedule.
    """

    differentiable = True
    name = "diffusionpde"

    def __init__(
        self,
        measurement,
        steps: int,
        pde: PDETerm | None = None,
        obs_weight=None,
        pde_weight: float = 100.0,
        switch_fraction: float = 0.8,
        late_obs_factor: float = 0.1,
        noise=None,
        grid=None,
        precondition=False,
    ):
        super().__init__(measurement, noise, grid, precondition)
        self.steps, self.pde, self.pde_weight = int(steps), pde, float(pde_weight)
        self.obs_weight = obs_weight
        self.switch_fraction, self.late_obs_factor = switch_fraction, late_obs_factor
        self.zetas = {g: self._zeta(g) for g in measurement.group_ids}
        self.h2 = math.prod(grid.spacing) ** (2 / grid.ndim) if grid is not None else 1.0

    def _zeta(self, group: int) -> float:
        if self.obs_weight is None:
            scale = float(self.measurement.scale[self.measurement.groups == group][0])
            return 20.0 / scale
        return _weight(self.obs_weight, self.measurement.names[group])

    def loss(self, denoised: torch.Tensor, index: int) -> torch.Tensor:
        """The weighted loss per member, ``(B,)``."""
        m = self.measurement
        misfit = m.residual(denoised) * m.scale.to(denoised.device, denoised.dtype)
        early = index <= self.switch_fraction * self.steps
        factor = 1.0 if early else self.late_obs_factor
        groups = m.groups.to(denoised.device)
        total = denoised.new_zeros(denoised.shape[0])
        for g in m.group_ids:
            norm = misfit[:, groups == g].square().sum(-1).sqrt()
            total = total + factor * self.zetas[g] * norm
        if self.pde is not None and self.pde_weight and not early:
            residual = self.h2 * self.pde(denoised).flatten(1)
            total = total + self.pde_weight * residual.square().sum(-1).sqrt() / residual.shape[1]
        return total

    def __call__(self, x_next, *, x, denoised, sigma, sigma_next, index):
        gradient = self.gradient(self.loss(denoised, index), x)
        return x_next - self.precondition(gradient)

    def options(self) -> dict:
        weight = self.obs_weight
        return {
            "obs_weight": "20/std" if weight is None else str(weight),
            "pde_weight": self.pde_weight,
            "switch_fraction": self.switch_fraction,
            "pde": self.pde.problem.name if self.pde is not None else "",
        }
