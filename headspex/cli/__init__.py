"""The ``headspex`` command (``python -m headspex`` runs it too).

Subcommands: ``attribute``, ``structure``, ``report`` (:mod:`headspex.cli.attribute`) and
``prune`` (:mod:`headspex.cli.prune`). Every error a user can trigger is a
:class:`~headspex.errors.HeadspexError`: printed as one line ``headspex <command>: error: …``,
exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import HeadspexError
from . import attribute, prune
from .attribute import DEFAULT_LAYERS, DEFAULT_METHOD, DEFAULT_MODEL, DEFAULT_QUESTIONS, DEFAULT_SUBJECT, parse_layers
from .common import CLIError

__all__ = ["DEFAULT_LAYERS", "DEFAULT_METHOD", "DEFAULT_MODEL", "DEFAULT_QUESTIONS", "DEFAULT_SUBJECT", "CLIError",
           "build_parser", "main", "parse_layers"]


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``headspex`` command."""
    parser = argparse.ArgumentParser(
        prog="headspex",
        description="Attribute a task to attention heads by ablation (sparse interactions with ProxySPEX), "
        "measure the layerwise linear / interaction structure, render reports, prune.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    attribute.register(sub)
    prune.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``headspex`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HeadspexError as error:
        # Every error a user can trigger derives from HeadspexError and names the problem
        # and the fix: one line, exit status 2. Anything else is a bug and keeps its traceback.
        print(f"headspex {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
