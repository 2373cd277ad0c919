"""The Ray actor: one model replica that evaluates chunks of masks for any game over it.

A worker is created from a :class:`~headspex.distributed.spec.ModelSpec` only and loads its
model on first use; every call carries the :class:`~headspex.distributed.spec.GameSpec` it
is for, so a worker that Ray restarts after a crash rebuilds its state from the call alone.
The class is plain Python (Ray wraps it in :mod:`headspex.distributed.pool`), so it can be
tested without Ray.
"""

from __future__ import annotations

import os
import socket
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import HeadspexError
from .spec import GameSpec, ModelSpec

#: Games kept built per worker (each holds its reference statistics and block inputs).
MAX_GAMES_PER_WORKER = 4


class GameWorker:
    """One model replica in a worker process.

    Args:
        name: the worker's name in messages (``worker-3``).
        model: how to load the model.
        threads: torch intra-op threads of this process (``None`` = torch's default).
    """

    def __init__(self, name: str, model: ModelSpec, threads: int | None = None) -> None:
        import torch

        self.name = name
        self.model_spec = model
        self.threads = threads
        if threads:
            torch.set_num_threads(threads)
        # Inside a pool Ray hides every GPU but the worker's own, which is then "cuda" (index 0).
        self.device = "cuda" if model.device.startswith("cuda") else "cpu"
        self._model: Any = None
        self._tasks: dict[str, Any] = {}
        self._games: OrderedDict[str, Any] = OrderedDict()
        self.busy_seconds = 0.0  # time spent inside evaluate(): the pool's overhead is the rest

    def identity(self) -> dict[str, Any]:
        """Name, process id, host and device of this worker."""
        return {"name": self.name, "pid": os.getpid(), "host": socket.gethostname(), "device": self.device,
                "threads": self.threads, "model_loaded": self._model is not None, "busy_seconds": self.busy_seconds}

    def load(self) -> dict[str, Any]:
        """Load the model now; returns ``identity()`` plus ``ok`` and, on failure, ``error``.

        Failures come back as a value, not an exception, so the driver can name this worker
        and the model in one line.
        """
        started = time.perf_counter()
        try:
            self._ensure_model()
        except Exception as error:  # noqa: BLE001 - reported to the driver, which raises
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return {**self.identity(), "ok": False, "error": f"{type(error).__name__}: {first_line}"}
        shape = self._model.cfg
        return {**self.identity(), "ok": True, "seconds": time.perf_counter() - started,
                "shape": {"n_layers": int(shape.n_layers), "n_heads": int(shape.n_heads), "d_mlp": int(shape.d_mlp)}}

    def prepare(self, spec: GameSpec) -> dict[str, Any]:
        """Build the game of ``spec`` and describe it: what the driver needs to score logits.

        Returns a dict with ``player_names``, ``n_questions``, ``n_calibration``,
        ``correct_index`` (int64[q]), ``question_ids``, ``cloze``, ``n_candidates``,
        ``metric``, ``describe`` (the game's provenance), ``fingerprint`` (what its cache
        folder is checked against) and ``preferred_chunk`` (masks per efficient call).
        """
        from ..io import to_jsonable

        game = self._game(spec)
        # The game's largest micro-batch in masks: chunks smaller than this waste batch rows.
        preferred = game.preferred_masks_per_call()
        return {
            "worker": self.name,
            "player_names": list(game.player_names),
            "n_questions": int(game.n_questions),
            "n_calibration": int(game.n_calibration),
            "correct_index": game.correct_index.numpy().astype(np.int64),
            "question_ids": list(game.scored.question_ids),
            "cloze": bool(game.cloze),
            "n_candidates": int(game.candidate_ids.shape[1]),
            "metric": game.metric,
            "describe": to_jsonable(game.describe()),
            "fingerprint": to_jsonable(game._fingerprint()),
            "preferred_chunk": int(preferred),
        }

    def evaluate(self, spec: GameSpec, masks: np.ndarray) -> np.ndarray:
        """Candidate logits of ``masks bool[m, n]``: ``float32[m, q_all, c]`` (scored questions,
        then calibration questions), exactly what the in-process game stores per mask."""
        started = time.perf_counter()
        game = self._game(spec)
        logits = game._logits_for(np.asarray(masks, dtype=bool))
        self.busy_seconds += time.perf_counter() - started
        return logits

    def _ensure_model(self) -> Any:
        if self._model is None:
            self._model = self.model_spec.load(self.device)
        return self._model

    def _game(self, spec: GameSpec) -> Any:
        from ..devices import check_memory_budget

        key = spec.key()
        if key in self._games:
            self._games.move_to_end(key)
            return self._games[key]
        if spec.model != self.model_spec:
            raise HeadspexError(
                f"{self.name} holds model {self.model_spec.source!r}, not {spec.model.source!r}: "
                "a pool serves games over its own model only"
            )
        model = self._ensure_model()
        check_memory_budget(self.device, spec.memory_budget_mb)
        task_key = GameSpec(spec.model, spec.task, ("L0",)).key()
        if task_key not in self._tasks:
            self._tasks[task_key] = spec.task.build(model.tokenizer)
        game = spec.build(model=model, task=self._tasks[task_key])
        self._games[key] = game
        while len(self._games) > MAX_GAMES_PER_WORKER:
            self._games.popitem(last=False)
        return game
