"""The ``sciml-diffusion`` command: argparse subcommands, thin over the library.

Each command group lives in a module of its own (``cli/data.py``, ``cli/grf.py``, ...)
exposing ``register(subparsers)``; the group adds its parsers and sets ``func`` on each.
A user error (``ValueError``, ``FileNotFoundError``) prints one line to stderr and exits
with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "build_parser"]

#: command groups, each a module of this package with ``register(subparsers)``
GROUPS = ("data", "grf", "prior", "sde", "inverse", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available command group."""
    from sciml_diffusion import __version__

    parser = argparse.ArgumentParser(
        prog="sciml-diffusion",
        description="Generative models of physical fields and stochastic dynamics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for name in GROUPS:
        try:
            module = importlib.import_module(f"sciml_diffusion.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"sciml_diffusion.cli.{name}":
                continue
            raise
        module.register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as error:
        message = error.args[0] if error.args else repr(error)
        print(f"sciml-diffusion: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sciml-diffusion: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
