"""Shared fixtures of the PDE tests."""

import torch


def directional_derivative_error(
    func, x: torch.Tensor, seed: int = 0, eps: float = 1e-3, dtype=torch.float32
):
    """Relative gap between autograd and a central finite difference of ``mean(func(x)^2)``.

    The loss is evaluated in ``dtype`` (float32 by default) and differentiated along the
    random relative direction ``v = xi * |x|`` (``xi`` standard normal), step ``eps``.
    """
    x = x.detach().to(dtype).requires_grad_(True)
    loss = func(x).pow(2).mean()
    (grad,) = torch.autograd.grad(loss, x)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    v = v * x.detach().abs()
    step = eps
    with torch.no_grad():
        plus = func(x + step * v).pow(2).mean()
        minus = func(x - step * v).pow(2).mean()
    numeric = (plus - minus) / (2 * step)
    analytic = (grad * v).sum()
    return float((numeric - analytic).abs() / analytic.abs())
