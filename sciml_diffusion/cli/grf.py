"""``sciml-diffusion grf sample``: Gaussian random field samples to NetCDF (and PNG)."""

from __future__ import annotations

import argparse

from sciml_diffusion.cli.checks import (
    check_memory,
    check_output_file,
    check_plot_path,
    finite_float,
    positive_float,
    positive_int,
)

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``grf`` command group."""
    parser = groups.add_parser("grf", help="Gaussian random fields")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    sample = commands.add_parser(
        "sample", help="draw GRF samples with covariance sigma^2 (-Laplacian + tau^2)^-alpha"
    )
    sample.add_argument(
        "--resolution", default="64", help="nodes per axis: N, or one per axis (N1,N2)"
    )
    sample.add_argument("--dims", type=int, default=2, choices=(1, 2, 3), help="spatial dims")
    sample.add_argument("--alpha", type=positive_float, default=2.0, help="smoothness (> dims/2)")
    sample.add_argument(
        "--tau", type=finite_float, default=3.0, help="inverse length scale (> 0), 1/length"
    )
    sample.add_argument("--sigma", type=positive_float, default=1.0, help="amplitude (> 0)")
    sample.add_argument(
        "--boundary",
        default="periodic",
        choices=("periodic", "dirichlet", "neumann"),
        help="boundary condition of the covariance on the unit domain",
    )
    sample.add_argument("--samples", type=positive_int, default=4, help="number of fields")
    sample.add_argument("--seed", type=int, default=0, help="random seed")
    sample.add_argument("--variable", default="a", help="name of the variable in the file")
    sample.add_argument("--out", required=True, help="output .nc (or .h5/.zarr) path")
    sample.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    sample.add_argument("--plot", default=None, help="optional PNG of the first samples")
    sample.add_argument("--force", action="store_true", help="skip the memory check")
    sample.set_defaults(func=_sample)


def _sample(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from sciml_diffusion import __version__
    from sciml_diffusion.cli.checks import parse_resolution
    from sciml_diffusion.fields import FieldDataset, GaussianRandomField, Grid

    shape = parse_resolution(args.resolution, (3,) * args.dims)
    if any(n < 3 for n in shape):
        raise ValueError(f"--resolution must be >= 3 nodes per axis, got {args.resolution}")
    out = check_output_file(args.out, overwrite=args.overwrite)
    plot = check_plot_path(args.plot, overwrite=args.overwrite, inputs=[out])
    # samples in float64 plus the complex spectrum and the float32 copy written out
    check_memory(
        args.samples * np.prod(shape) * (8 + 16 + 4 + 8),
        f"{args.samples} samples on a {'x'.join(map(str, shape))} grid",
        force=args.force,
    )
    grf = GaussianRandomField(args.alpha, args.tau, args.sigma, boundary=args.boundary)
    grid = Grid.regular(shape, periodic=args.boundary == "periodic")
    generator = torch.Generator().manual_seed(args.seed)
    fields = grf.sample(grid, args.samples, generator=generator)
    if not torch.isfinite(fields).all() or not fields.abs().max() > 0:
        raise ValueError(
            f"alpha={args.alpha}, tau={args.tau}, sigma={args.sigma} give non-finite or all-zero "
            "fields; use moderate values (e.g. alpha 2, tau 3, sigma 1)"
        )
    attrs = {
        "title": "Gaussian random field samples",
        "covariance": "sigma^2 (-Laplacian + tau^2)^(-alpha)",
        "alpha": args.alpha,
        "tau": args.tau,
        "sigma": args.sigma,
        "boundary": args.boundary,
        "seed": args.seed,
        "sciml_diffusion_version": __version__,
    }
    dataset = FieldDataset.from_tensor(fields[:, None], [args.variable], grid=grid, attrs=attrs)
    dataset.save(out)
    print(f"wrote {args.samples} samples on {grid} to {out}")
    if plot:
        from sciml_diffusion.plot import plot_fields

        plot_fields(
            dataset,
            samples=min(args.samples, 4),
            path=plot,
            title=f"GRF alpha={args.alpha} tau={args.tau} ({args.boundary})",
        )
        print(f"wrote {plot}")
