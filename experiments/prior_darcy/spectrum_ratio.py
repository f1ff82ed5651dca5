"""Per-mode ratio of the Darcy data's spectrum to the GRF noise's spectrum.

A Gaussian measure's Cameron–Martin space holds the fields ``x`` with
``sum_m c_m(x)^2 / s_m < inf`` (``c_m`` the mode coefficients, ``s_m`` the noise's mode
variances). For data whose per-mode variance ``E c_m^2`` is a fixed fraction of ``s_m`` up
to the highest modes, that sum grows with the number of modes: the data are as rough as the
noise, outside its Cameron–Martin space, and the "function-space" limit of the model does
not hold for them. This script measures ``E c_m^2 / s_m`` by shells of wavenumber for the
normalised Darcy ``a`` and ``u``, in the cosine (Neumann) basis of the training noise.

    python experiments/prior_darcy/spectrum_ratio.py --data /tmp/pd/quick/darcy_train.nc \
        --out docs/results/prior_darcy_spectrum_ratio.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sciml_diffusion.diffusion import GRFNoise
from sciml_diffusion.fields import FieldDataset, Normalizer


def shell_ratios(dataset: FieldDataset, variable: str, alpha: float, tau: float) -> dict:
    """``{shell |k| index: mean over the shell of E c_m^2 / s_m}`` for one variable."""
    grid = dataset.grid
    noise = GRFNoise.unit_variance(grid, alpha, tau, boundary="neumann")
    x = Normalizer.fit(dataset, [variable]).normalize(dataset.to_tensor([variable]))[:, 0]
    x = x.double() - x.double().mean(0)
    power = noise.field.to_modes(x, grid).pow(2).mean(0)
    s = noise.field.spectrum(grid, dtype=torch.float64)
    ky, kx = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    shell = np.rint(np.hypot(ky, kx)).astype(int)
    ratio = (power / s).numpy()
    return {int(k): float(ratio[shell == k].mean()) for k in range(1, min(grid.shape))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a Darcy FieldDataset (NetCDF)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--alpha", type=float, default=1.5)
    parser.add_argument("--tau", type=float, default=20.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = FieldDataset.open(args.data)
    result = {
        "data": str(args.data),
        "samples": len(data),
        "grid": list(data.grid.shape),
        "noise": {"alpha": args.alpha, "tau": args.tau, "basis": "neumann (cosine)"},
        "ratio_by_shell": {v: shell_ratios(data, v, args.alpha, args.tau) for v in ("a", "u")},
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    for v, ratios in result["ratio_by_shell"].items():
        picks = [k for k in (1, 2, 4, 8, 16, 24, 32, 48, 63) if k in ratios]
        print(v, " ".join(f"|k|={k}: {ratios[k]:.3g}" for k in picks))


if __name__ == "__main__":
    main()
