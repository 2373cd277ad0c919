"""The one mask store: arrays keyed by mask, kept in memory and optionally appended to disk.

An estimator's fit evaluates every mask through one (``fit(game, budget, store=...)``; a
fresh in-memory store when none is given), the attribution runner hands it its on-disk store
(per-question values, so an interrupted run resumes without evaluating a mask twice), and
the AblationGame keeps its optional logits cache in one. Torch-free (numpy only).
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import HeadspexError
from ..io import move_aside


class MaskStoreError(HeadspexError):
    """A store folder that does not fit the game it is opened for."""


class CorruptFileWarning(UserWarning):
    """A cache or result file failed its check: it was moved aside and will be recomputed."""


def batch_checksum(masks: np.ndarray, values: np.ndarray, key: str) -> str:
    """SHA-256 (hex) of one batch: its provenance key, the masks' shape and bits, the values' dtype, shape and bytes."""
    masks = np.ascontiguousarray(masks, dtype=bool)
    values = np.ascontiguousarray(values)
    digest = hashlib.sha256()
    digest.update(f"{key}|{masks.shape}|{values.dtype.str}|{values.shape}|".encode())
    digest.update(np.packbits(masks, axis=None).tobytes())
    digest.update(values.tobytes())
    return digest.hexdigest()


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

    Files are ``batch_00000.npz`` holding ``masks bool[b, n]``, ``<value_name> [b, ...]``,
    the store's ``provenance_key`` and a ``checksum`` (:func:`batch_checksum`); each is
    written under a temporary name and renamed, so a killed run leaves either a whole batch
    or none. A file is never trusted without its check: one that cannot be read, fails its
    checksum, carries another provenance key or another row shape than the store's other
    files is renamed ``*.corrupt`` (a :class:`CorruptFileWarning` names it) and its masks
    are simply missing, so the caller recomputes them.

    Args:
        directory: folder of the batch files (``None`` = memory only).
        n_players: n, checked against every file read.
        value_name: name of the value array in the files.
        provenance_key: identity of the computation the values come from (e.g. a run's
            provenance key and unit); files written under another key are not used.

    Attributes:
        n_added: rows added since this store was opened (= masks evaluated by this process).
    """

    def __init__(self, directory: Path | str | None, n_players: int, value_name: str = "values",
                 provenance_key: str = "") -> None:
        self.directory = Path(directory) if directory is not None else None
        self.n_players = n_players
        self.value_name = value_name
        self.provenance_key = provenance_key
        self.rows: dict[bytes, np.ndarray] = {}
        self.n_files = 0
        self.n_added = 0
        #: files that failed their check, as (original path, where it was moved, why).
        self.rejected: list[tuple[Path, Path, str]] = []
        self._row_shape: tuple[int, ...] | None = None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            paths = [p for p in sorted(self.directory.glob("batch_*.npz")) if not p.name.endswith(".tmp.npz")]
            for path in paths:
                self._read(path)
            # New batches never overwrite a file (a moved-aside one included).
            self.n_files = 1 + max((int(p.name[6:11]) for p in paths if p.name[6:11].isdigit()), default=-1)

    def _read(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                masks, values = data["masks"], data[self.value_name]
                checksum = str(data["checksum"]) if "checksum" in data.files else None
                key = str(data["provenance_key"]) if "provenance_key" in data.files else None
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as error:
            return self._reject(path, f"it cannot be read ({type(error).__name__}: {error})")
        if masks.ndim == 2 and masks.shape[1] != self.n_players:
            raise MaskStoreError(
                f"cache file {path} holds masks over {masks.shape[1]} players, expected "
                f"{self.n_players}; remove the folder or use another one"
            )
        problem = self._problem(masks, values, checksum, key)
        if problem is not None:
            return self._reject(path, problem)
        self._row_shape = values.shape[1:]
        self.rows.update(zip(mask_keys(masks.astype(bool)), values))

    def _problem(self, masks: np.ndarray, values: np.ndarray, checksum: str | None, key: str | None) -> str | None:
        if checksum is None or key is None:
            return "it carries no checksum (written by an older headspex)"
        if masks.dtype != bool or masks.ndim != 2 or values.shape[:1] != masks.shape[:1]:
            return f"its arrays do not fit (masks {masks.dtype}{masks.shape}, values {values.shape})"
        if key != self.provenance_key:
            return f"it belongs to another computation (provenance key {key!r}, expected {self.provenance_key!r})"
        if batch_checksum(masks, values, key) != checksum:
            return "its checksum does not match its content (the file was altered or damaged)"
        if self._row_shape is not None and values.shape[1:] != self._row_shape:
            return f"its value rows have shape {values.shape[1:]}, the store's other files {self._row_shape}"
        return None

    def _reject(self, path: Path, reason: str) -> None:
        try:
            moved = move_aside(path)
        except OSError as error:
            raise MaskStoreError(f"cache file {path} failed its check ({reason}) and cannot be moved aside "
                                 f"({error}); remove it and rerun") from None
        self.rejected.append((path, moved, reason))
        warnings.warn(f"cache file {path} failed its check: {reason}; moved to {moved.name}, its masks will be "
                      "recomputed", CorruptFileWarning, stacklevel=3)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, mask: np.ndarray) -> bool:
        return mask_key(mask) in self.rows

    def masks(self) -> np.ndarray:
        """Every stored mask, in the order stored: bool[len(self), n_players]."""
        if not self.rows:
            return np.zeros((0, self.n_players), dtype=bool)
        packed = np.frombuffer(b"".join(self.rows), dtype=np.uint8).reshape(len(self.rows), -1)
        return np.unpackbits(packed, axis=1, count=self.n_players).astype(bool)

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
        """Store a batch, and append it to disk (with its checksum) when the store has a folder."""
        values = np.asarray(values)
        self.rows.update(zip(mask_keys(masks), values))
        self.n_added += len(masks)
        if self.directory is not None and len(masks):
            masks = np.asarray(masks, dtype=bool)
            path = self.directory / f"batch_{self.n_files:05d}.npz"
            temporary = path.with_name(path.stem + ".tmp.npz")
            np.savez(temporary, masks=masks, **{self.value_name: values}, provenance_key=np.array(self.provenance_key),
                     checksum=np.array(batch_checksum(masks, values, self.provenance_key)))
            os.replace(temporary, path)
            self.n_files += 1
