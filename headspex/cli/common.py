"""What every subcommand of the ``headspex`` command shares: its error and argument types."""

from __future__ import annotations

import argparse

from ..errors import HeadspexError


class CLIError(HeadspexError):
    """A user error: printed as one line, exit status 2."""


def int_list(text: str) -> list[int]:
    """argparse type: ``"1,2, 4"`` / ``"1 2 4"`` -> ``[1, 2, 4]``."""
    try:
        return [int(part) for part in text.replace(",", " ").split()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got '{text}'") from error
