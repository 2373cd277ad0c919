"""The game's error: bad input to an AblationGame or to its scorers."""

from __future__ import annotations

from ..errors import HeadspexError


class GameError(HeadspexError):
    """Bad input to an AblationGame (masks, metric, cache from another game…) or its scorers."""


__all__ = ["GameError"]
