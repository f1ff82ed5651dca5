r"""Diffusion posterior sampling, DPS (Chung et al. 2023, "Diffusion posterior sampling for
general noisy inverse problems", Algorithm 1).

After each sampler step, move the new state against the gradient, with respect to the
step's *current* state :math:`x_i`, of the misfit of Tweedie's estimate
:math:`\hat x_0 = D(x_i, \sigma_i)`:

.. math::
    x_{i+1} \leftarrow x_{i+1} - \zeta_i\, C\, \nabla_{x_i}
        \lVert y - A(\hat x_0(x_i)) \rVert_2^2,
    \qquad \zeta_i = \frac{\zeta}{\lVert y - A(\hat x_0(x_i)) \rVert_2}.

The step size is Chung et al.'s convention (their section 4 / appendix C: a constant
:math:`\zeta'` divided by the current residual norm, so the update has a fixed scale
whatever the data's units); ``C`` is the noise covariance (identity for white noise,
see :mod:`~sciml_diffusion.inverse.guidance.base`). DPS approximates
:math:`p(y \mid x_\sigma)` by :math:`p(y \mid \hat x_0)`, ignoring the spread of
:math:`x_0` given :math:`x_\sigma`: it pulls members toward the data but does not sample
the posterior exactly, and the bias of its spread is measured in
``docs/results/gaussian_posterior.md``. One backward pass per step.
"""

from __future__ import annotations

from sciml_diffusion.inverse.guidance.base import Guidance

__all__ = ["DPS"]


class DPS(Guidance):
    """DPS with Chung et al.'s normalised step size.

    Parameters
    ----------
    measurement : Measurement
    zeta : float
        :math:`\\zeta'`, the guidance scale (Chung et al. use 0.1–1 on images with 1000
        DDPM steps; the update per step is proportional to it, so use fewer steps with a
        larger value).
    noise, grid, precondition
        As :class:`~sciml_diffusion.inverse.guidance.base.Guidance`.
    """

    differentiable = True
    name = "dps"

    def __init__(self, measurement, zeta: float = 1.0, noise=None, grid=None, precondition=True):
        super().__init__(measurement, noise, grid, precondition)
        if not zeta > 0:
            raise ValueError(f"zeta must be positive, got {zeta}")
        self.zeta = float(zeta)

    def __call__(self, x_next, *, x, denoised, sigma, sigma_next, index):
        misfit = self.measurement.residual(denoised).square().sum(-1)  # (B,)
        norm = misfit.detach().sqrt().clamp_min(1e-12)
        gradient = self.gradient(misfit / norm, x)
        return x_next - self.zeta * self.precondition(gradient)

    def options(self) -> dict:
        return {"zeta": self.zeta, "precondition": int(self.preconditioned)}
