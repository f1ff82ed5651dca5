"""``sciml-diffusion data ...``: inspect field data sets."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(groups: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group."""
    parser = groups.add_parser("data", help="inspect and generate field data sets")
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    info = commands.add_parser(
        "info", help="summarise a NetCDF/HDF5/Zarr file: dims, grid, variables, NaN, ranges"
    )
    info.add_argument("file", help="path to a .nc, .h5/.hdf5 or .zarr data set")
    info.add_argument("--variables", default=None, help="comma-separated variables to show")
    info.set_defaults(func=_info)


def _info(args: argparse.Namespace) -> None:
    from sciml_diffusion.fields import FieldDataset

    variables = args.variables.split(",") if args.variables else None
    dataset = FieldDataset.open(args.file, variables=variables)
    print(f"file: {args.file}")
    print(dataset.describe())
