"""The root of every error headspex raises on purpose.

``HeadspexError`` subclasses ``ValueError`` (most headspex errors are bad input), so code
that caught ``ValueError`` before keeps working. The CLI catches ``HeadspexError`` and prints
its message as one line (exit status 2); anything else is a bug and keeps its traceback.
Every module's own error class (``GameError``, ``TaskError``, ``ModelLoadError`` …) derives
from it, so ``except headspex.HeadspexError`` catches every error a user can trigger.
"""

from __future__ import annotations


class HeadspexError(ValueError):
    """A problem headspex detected and can explain in one line (what is wrong, what to do)."""


class EngineError(HeadspexError):
    """Bad input to the interaction engine: masks, values, budgets, bases, orders."""


class ReportError(HeadspexError):
    """A run directory or result file that cannot be summarised as asked."""
