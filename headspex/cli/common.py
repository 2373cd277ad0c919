"""What every subcommand of the ``headspex`` command shares: its error, argument types and quiet model loading."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import HeadspexError


class CLIError(HeadspexError):
    """A user error: printed as one line, exit status 2."""


def int_list(text: str) -> list[int]:
    """argparse type: ``"1,2, 4"`` / ``"1 2 4"`` -> ``[1, 2, 4]``."""
    try:
        return [int(part) for part in text.replace(",", " ").split()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got '{text}'") from error


@contextmanager
def quiet_model_loading(quiet: bool) -> Iterator[None]:
    """With ``quiet``: no progress bars while a model loads (transformers' weight loading and its
    GGUF dequantisation bar, which ignores transformers' own switch); restored afterwards."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as transformers_logging

    bars_were_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    gguf_utils: Any = None
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
        original_tqdm = gguf_utils.tqdm
        gguf_utils.tqdm = functools.partial(original_tqdm, disable=True)
    except (ImportError, AttributeError):  # another transformers layout: only its own switch applies
        gguf_utils = None
    try:
        yield
    finally:
        if gguf_utils is not None:
            gguf_utils.tqdm = original_tqdm
        if bars_were_enabled:
            transformers_logging.enable_progress_bar()
