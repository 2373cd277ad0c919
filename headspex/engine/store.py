"""The one mask store: arrays keyed by mask, kept in memory and optionally appended to disk.

An estimator's fit evaluates every mask through one (``fit(game, budget, store=...)``; a
fresh in-memory store when none is given), the attribution runner hands it its on-disk store
(per-question values, so an interrupted run resumes without evaluating a mask twice), and
the AblationGame keeps its optional logits cache in one. Torch-free (numpy only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import HeadspexError


class MaskStoreError(HeadspexError):
    """A store folder that does not fit the game it is opened for."""


def mask_keys(masks: np.ndarray) -> list[bytes]:
    """Hashable identity of each row of ``bool[m, n]`` masks (the rows' packed bits).

    The one spelling of a mask's key: a single ``bool[n]`` mask is keyed as
    ``mask_keys(mask[None])[0]`` (see :func:`mask_key`).
    """
    packed = np.packbits(np.asarray(masks, dtype=bool), axis=1)
    return [row.tobytes() for row in packed]


def mask_key(mask: np.ndarray) -> bytes:
    """Key of one mask ``bool[n]``: :func:`mask_keys` of a one-row matrix."""
    return mask_keys(np.asarray(mask, dtype=bool)[None, :])[0]


class MaskStore:
    """Arrays keyed by mask, written to disk batch by batch.

    Files are ``batch_00000.npz`` holding ``masks bool[b, n]`` and ``<value_name>
    [b, ...]``; each is written under a temporary name and renamed, so a killed run
    leaves either a whole batch or none.

    Args:
        directory: folder of the batch files (``None`` = memory only).
        n_players: n, checked against every file read.
        value_name: name of the value array in the files.

    Attributes:
        n_added: rows added since this store was opened (= masks evaluated by this process).
    """

    def __init__(self, directory: Path | str | None, n_players: int, value_name: str = "values") -> None:
        self.directory = Path(directory) if directory is not None else None
        self.n_players = n_players
        self.value_name = value_name
        self.rows: dict[bytes, np.ndarray] = {}
        self.n_files = 0
        self.n_added = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            for path in sorted(self.directory.glob("batch_*.npz")):
                if path.name.endswith(".tmp.npz"):
                    continue
                self._read(path)

    def _read(self, path: Path) -> None:
        with np.load(path) as data:
            masks, values = data["masks"].astype(bool), data[self.value_name]
        if masks.shape[1] != self.n_players:
            raise MaskStoreError(
                f"cache file {path} holds masks over {masks.shape[1]} players, expected "
                f"{self.n_players}; remove the folder or use another one"
            )
        self.rows.update(zip(mask_keys(masks), values))
        self.n_files += 1

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, mask: np.ndarray) -> bool:
        return mask_key(mask) in self.rows

    def get(self, mask: np.ndarray) -> np.ndarray | None:
        """The stored array of one mask ``bool[n]``, or None."""
        return self.rows.get(mask_key(mask))

    def missing(self, masks: np.ndarray) -> np.ndarray:
        """The distinct rows of ``masks bool[m, n]`` not stored yet, in first-seen order."""
        todo: dict[bytes, int] = {}
        for i, key in enumerate(mask_keys(masks)):
            if key not in self.rows:
                todo.setdefault(key, i)
        return masks[list(todo.values())]

    def stack(self, masks: np.ndarray) -> np.ndarray:
        """Stored arrays of ``masks`` (all must be stored), stacked: ``[m, ...]``."""
        return np.stack([self.rows[key] for key in mask_keys(masks)])

    def add(self, masks: np.ndarray, values: np.ndarray) -> None:
        """Store a batch, and append it to disk when the store has a folder."""
        self.rows.update(zip(mask_keys(masks), values))
        self.n_added += len(masks)
        if self.directory is not None and len(masks):
            path = self.directory / f"batch_{self.n_files:05d}.npz"
            temporary = path.with_name(path.stem + ".tmp.npz")
            np.savez(temporary, masks=np.asarray(masks, dtype=bool), **{self.value_name: values})
            os.replace(temporary, path)
            self.n_files += 1
