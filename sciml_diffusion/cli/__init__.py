"""The ``sciml-diffusion`` command: argparse subcommands, thin over the library.

Each command group lives in a module of its own (``cli/data.py``, ``cli/grf.py``, ...)
exposing ``register(subparsers)``; the group adds its parsers and sets ``func`` on each.
Checks shared by every command (output paths, devices, memory, argument values) live in
:mod:`sciml_diffusion.cli.checks`.

A user error (``ValueError``, ``OSError``, a bad argument) prints one line to stderr and
exits with status 2, never a traceback; an unexpected failure prints one line and exits 1
(set ``SCIML_DIFFUSION_DEBUG=1`` to see its traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main", "build_parser", "CommandParser", "HelpFormatter"]

#: command groups, each a module of this package with ``register(subparsers)``; one per line
GROUPS = (
    "data",
    "grf",
    "prior",
    "sde",
    "forecast",
    "evaluate",
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default (where it has one)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: the command, the problem, a hint."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available command group."""
    from sciml_diffusion import __version__

    parser = CommandParser(
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
    import warnings

    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or an argument error (already printed)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("sciml-diffusion: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError, MemoryError) as error:
        print(f"sciml-diffusion: error: {error_message(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug, not a user error: still one line unless debugging
        if os.environ.get("SCIML_DIFFUSION_DEBUG"):
            raise
        print(
            f"sciml-diffusion: internal error: {type(error).__name__}: {error_message(error)} "
            "(set SCIML_DIFFUSION_DEBUG=1 for the traceback and please report it)",
            file=sys.stderr,
        )
        return 1
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"sciml-diffusion: warning: {message}\n"


def error_message(error: BaseException) -> str:
    """One line describing ``error`` (``OSError``s with their file, not their errno)."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    if isinstance(error, MemoryError):
        return "out of memory; ask for fewer samples or a smaller grid"
    text = str(error.args[0]) if error.args else repr(error)
    return " ".join(text.split("\n")[0].split()) or type(error).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
