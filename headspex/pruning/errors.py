"""Errors of the pruning package (all derive from :class:`~headspex.errors.HeadspexError`)."""

from __future__ import annotations

from ..errors import HeadspexError


class PruningError(HeadspexError):
    """Bad input to the pruning module (k out of range, unknown mode, mismatched model...)."""


class QuestionOverlapError(PruningError):
    """Evaluation questions were also used to compute the attribution (or its statistics)."""
