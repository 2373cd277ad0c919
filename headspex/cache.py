"""A per-mask store of evaluated results, kept in memory and appended to disk (resume).

Both the AblationGame (candidate logits per mask) and the attribution runner (per-question
values per mask) keep one: an interrupted run re-reads it and never evaluates a mask twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from .errors import HeadspexError


class MaskStoreError(HeadspexError):
    """A store folder that does not fit the game it is opened for."""


def mask_key(mask: np.ndarray) -> bytes:
    """Hashable identity of one boolean mask row ``bool[n]``."""
    return np.packbits(np.asarray(mask, dtype=bool)).tobytes()


class MaskStore:
    """Arrays keyed by mask, written to disk batch by batch.

    Files are ``batch_00000.npz`` holding ``masks bool[b, n]`` and ``<value_name>
    [b, ...]``; each is written under a temporary name and renamed, so a killed run
    leaves either a whole batch or none.

    Args:
        directory: folder of the batch files (``None`` = memory only).
        n_players: n, checked against every file read.
        value_name: name of the value array in the files.
    """

    def __init__(self, directory: Path | str | None, n_players: int, value_name: str = "values") -> None:
        self.directory = Path(directory) if directory is not None else None
        self.n_players = n_players
        self.value_name = value_name
        self.rows: dict[bytes, np.ndarray] = {}
        self.n_files = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            for path in sorted(self.directory.glob("batch_*.npz")):
                if path.name.endswith(".tmp.npz"):
                    continue
                with np.load(path) as data:
                    masks, values = data["masks"].astype(bool), data[value_name]
                if masks.shape[1] != n_players:
                    raise MaskStoreError(
                        f"cache file {path} holds masks over {masks.shape[1]} players, expected "
                        f"{n_players}; remove the folder or use another one"
                    )
                for mask, row in zip(masks, values):
                    self.rows[mask_key(mask)] = row
                self.n_files += 1

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, mask: np.ndarray) -> bool:
        return mask_key(mask) in self.rows

    def get(self, mask: np.ndarray) -> np.ndarray | None:
        return self.rows.get(mask_key(mask))

    def missing(self, masks: np.ndarray) -> np.ndarray:
        """The distinct rows of ``masks bool[m, n]`` not stored yet, in first-seen order."""
        todo: dict[bytes, int] = {}
        for i, mask in enumerate(masks):
            key = mask_key(mask)
            if key not in self.rows:
                todo.setdefault(key, i)
        return masks[list(todo.values())]

    def stack(self, masks: np.ndarray) -> np.ndarray:
        """Stored arrays of ``masks`` (all must be stored), stacked: ``[m, ...]``."""
        return np.stack([self.rows[mask_key(mask)] for mask in masks])

    def add(self, masks: np.ndarray, values: np.ndarray) -> None:
        """Store a batch, and append it to disk when the store has a folder."""
        for mask, row in zip(masks, values):
            self.rows[mask_key(mask)] = row
        if self.directory is not None and len(masks):
            path = self.directory / f"batch_{self.n_files:05d}.npz"
            temporary = path.with_name(path.stem + ".tmp.npz")
            np.savez(temporary, masks=np.asarray(masks, dtype=bool), **{self.value_name: values})
            os.replace(temporary, path)
            self.n_files += 1
