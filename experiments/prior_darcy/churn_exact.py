"""Variance error of the stochastic sampler's churn, with the exact Gaussian denoiser.

Data: a 2-D periodic GRF (alpha 1.5, tau 4, sigma 10) on 12² nodes, GRF noise at unit
variance, 1000 samples, EDM levels in [0.002, 80]. Prints, per number of levels and
``S_churn``, the mean relative error of the samples' mode variances with churn on every
level and within EDM's window [0.05, 50] (the numbers in ``docs/priors.md``).

    nice python experiments/prior_darcy/churn_exact.py
"""

import json

import torch

from sciml_diffusion.diffusion import GaussianDenoiser, GRFNoise, edm_sigmas, stochastic
from sciml_diffusion.fields import GaussianRandomField, Grid


def variance_error(field, noise, grid, steps, count=1000, **options) -> float:
    denoiser = GaussianDenoiser(field, noise, grid)
    sigmas = edm_sigmas(steps, 0.002, 80.0)
    gen = torch.Generator().manual_seed(0)
    x = sigmas[0].item() * noise.sample((count, *grid.shape), grid, gen).double()
    out = stochastic(denoiser, x, sigmas, noise=noise, grid=grid, generator=gen, **options)
    return float((field.to_modes(out, grid).var(0) / denoiser.spectrum).mean() - 1)


def main() -> None:
    torch.set_num_threads(1)
    field = GaussianRandomField(alpha=1.5, tau=4.0, sigma=10.0)
    grid = Grid.regular((12, 12), periodic=True)
    noise = GRFNoise.unit_variance(grid, 1.5, 10.0)
    for steps in (32, 64):
        for churn in (0.0, 5.0, 10.0, 20.0, 40.0):
            row = {"levels": steps, "churn": churn}
            for name, window in (("everywhere", (0.0, float("inf"))), ("edm_window", (0.05, 50))):
                error = variance_error(
                    field,
                    noise,
                    grid,
                    steps,
                    churn=churn,
                    sigma_tmin=window[0],
                    sigma_tmax=window[1],
                )
                row[name] = round(100 * error, 2)
            print(json.dumps(row))


if __name__ == "__main__":
    main()
