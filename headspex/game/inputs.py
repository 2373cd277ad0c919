"""Checks of what a game is handed: players, metric, masks, and the folder of an on-disk mask store.

Shared by the in-process game and the distributed one, each raising its own error class.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..components import ComponentLike, Players
from ..tasks.base import METRICS
from .errors import GameError


def checked_masks(masks: Any, player_names: list[str], error: type[Exception]) -> np.ndarray:
    """``masks`` as ``bool[m, n]`` (a single mask ``[n]`` becomes one row); ``error`` with one line
    naming the expected shape and the players, or the dtype, otherwise (0/1 integers are accepted)."""
    n_players = len(player_names)
    array = np.asarray(masks)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n_players:
        raise error(
            f"Wrong mask shape {array.shape}: expected [m, {n_players}] for players "
            f"{', '.join(player_names[:4])}{', …' if n_players > 4 else ''}."
        )
    if array.dtype != np.bool_:
        if array.size and not np.isin(array, (0, 1)).all():
            raise error(f"Masks must be boolean (True = kept); got values of dtype {array.dtype}.")
        array = array.astype(bool)
    return array


def claim_store_folder(directory: Path, fingerprint: dict[str, Any], error: type[Exception]) -> None:
    """Write ``fingerprint`` (the game's provenance) to ``directory/game.json``, or, when one is
    there, raise ``error`` naming the keys that differ: a store of another game is never reused."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "game.json"
    wanted = json.loads(json.dumps(fingerprint, default=str))
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != wanted:
            differing = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise error(f"The mask store in {directory} belongs to another game (differs in {differing}); "
                        "use another folder or delete it.")
    else:
        path.write_text(json.dumps(wanted, indent=1))


def game_players(players: Players | Sequence[ComponentLike], model: Any) -> Players:
    """``players`` as a validated, non-empty :class:`Players` of ``model``."""
    players = players if isinstance(players, Players) else Players(players, model)
    players.validate(model)
    if len(players) == 0:
        raise GameError("A game needs at least one player.")
    return players


def checked_metric(metric: str) -> str:
    """``metric`` if it is one of :data:`headspex.tasks.METRICS`, else a :class:`GameError`."""
    if metric not in METRICS:
        raise GameError(f"Unknown metric '{metric}'; choose one of {METRICS}.")
    return metric
