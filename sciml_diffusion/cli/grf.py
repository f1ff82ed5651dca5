"""``sciml-diffusion grf sample``: Gaussian random field samples to NetCDF (and PNG)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``grf`` command group."""
    parser = groups.add_parser("grf", help="Gaussian random fields")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    sample = commands.add_parser(
        "sample", help="draw GRF samples with covariance sigma^2 (-Laplacian + tau^2)^-alpha"
    )
    sample.add_argument("--resolution", type=int, default=64, help="nodes per axis")
    sample.add_argument("--dims", type=int, default=2, choices=(1, 2, 3), help="spatial dims")
    sample.add_argument("--alpha", type=float, default=2.0, help="smoothness (> dims/2)")
    sample.add_argument("--tau", type=float, default=3.0, help="inverse length scale (> 0)")
    sample.add_argument("--sigma", type=float, default=1.0, help="amplitude (> 0)")
    sample.add_argument(
        "--boundary", default="periodic", choices=("periodic", "dirichlet", "neumann")
    )
    sample.add_argument("--samples", type=int, default=4, help="number of fields")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--variable", default="a", help="name of the variable in the file")
    sample.add_argument("--out", required=True, help="output .nc (or .h5/.zarr) path")
    sample.add_argument("--plot", default=None, help="optional PNG of the first samples")
    sample.set_defaults(func=_sample)


def _sample(args: argparse.Namespace) -> None:
    import torch

    from sciml_diffusion import __version__
    from sciml_diffusion.fields import FieldDataset, GaussianRandomField, Grid

    if args.resolution < 3:
        raise ValueError(f"--resolution must be >= 3, got {args.resolution}")
    grf = GaussianRandomField(args.alpha, args.tau, args.sigma, boundary=args.boundary)
    grid = Grid.regular((args.resolution,) * args.dims, periodic=args.boundary == "periodic")
    generator = torch.Generator().manual_seed(args.seed)
    fields = grf.sample(grid, args.samples, generator=generator)
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
    dataset.save(args.out)
    print(f"wrote {args.samples} samples on {grid} to {args.out}")
    if args.plot:
        from sciml_diffusion.plot import plot_fields

        plot_fields(
            dataset,
            samples=min(args.samples, 4),
            path=args.plot,
            title=f"GRF alpha={args.alpha} tau={args.tau} ({args.boundary})",
        )
        print(f"wrote {args.plot}")
