"""An ablation game whose masks are evaluated by a worker pool: the same value function.

:class:`DistributedGame` answers like :class:`~headspex.game.AblationGame` (``game(masks)``,
``question_values``, ``candidate_logits``, ``n_players``, ``player_names``, ``describe``),
so the engine, attribution and pruning use it unchanged. The driver keeps the one mask store
(candidate logits per mask, the game's own cache format, on disk when ``store_dir`` is
given): workers return logits per chunk, each chunk is merged once, and a driver that is
killed and restarted on the same ``store_dir`` sends only the masks the store lacks.
Values are computed from the logits here, exactly as the in-process game computes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.store import MaskStore
from ..components import Players
from .pool import DistributedError, Progress, WorkerPool, auto_chunk_masks
from .spec import GameSpec, TaskSpec
from ..game.inputs import checked_masks, claim_store_folder


class DistributedGame:
    """``bool[m, n] -> float64[m]`` over a :class:`~headspex.distributed.pool.WorkerPool`.

    Args:
        pool: the workers (started here if needed); their model must be ``spec.model``.
        spec: the game (players, task, mode, metric…).
        store_dir: folder of the mask store (resume); it is the in-process game's
            ``cache_dir`` format, and a folder of another game is refused. ``None`` = memory.
        chunk_masks: masks per chunk sent to a worker (``None``: see
            :func:`~headspex.distributed.pool.auto_chunk_masks`).
        progress: a tqdm bar per call (masks done, rows/s, workers alive).
        on_progress: called with a :class:`~headspex.distributed.pool.Progress` after every chunk.
    """

    def __init__(
        self,
        pool: WorkerPool,
        spec: GameSpec,
        *,
        store_dir: str | Path | None = None,
        chunk_masks: int | None = None,
        progress: bool = True,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        if chunk_masks is not None and chunk_masks < 1:
            raise DistributedError(f"chunk_masks must be >= 1; got {chunk_masks}")
        if spec.model != pool.model:
            raise DistributedError(f"the pool holds model {pool.model.source!r} but the game asks for {spec.model.source!r}")
        self.pool = pool.start()
        self.spec = spec
        self.chunk_masks = chunk_masks
        self.progress = progress
        self.on_progress = on_progress
        info = pool.prepare(spec)
        self.info = info
        self.player_names: list[str] = list(info["player_names"])
        self.players = Players(self.player_names)
        self.n_questions: int = info["n_questions"]
        self.n_calibration: int = info["n_calibration"]
        self.question_ids: list[str] = list(info["question_ids"])
        self.cloze: bool = info["cloze"]
        self.metric: str = info["metric"]
        self.mode, self.split = spec.mode, spec.split
        self._correct_index = info["correct_index"]
        # Rows one mask costs on a worker: every scored and calibration question (x choices for cloze).
        self.rows_per_mask = (self.n_questions + self.n_calibration) * (info["n_candidates"] if self.cloze else 1)
        self.store_dir = Path(store_dir) if store_dir is not None else None
        if self.store_dir is not None:
            _claim_store(self.store_dir, info["fingerprint"])
        self._store = MaskStore(self.store_dir, self.n_players, value_name="logits")
        self.n_evaluated_masks = 0  # masks merged into the store by this object
        self.n_row_evaluations = 0
        self.last_progress: Progress | None = None

    # ------------------------------------------------------------------ value function

    @property
    def n_players(self) -> int:
        return len(self.player_names)

    @property
    def correct_index(self) -> Any:
        import torch

        return torch.from_numpy(self._correct_index.copy())

    @property
    def n_cached_masks(self) -> int:
        return len(self._store)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Task value per mask: ``bool[m, n] -> float64[m]`` (mean over questions)."""
        return self.question_values(masks).mean(axis=1)

    def question_values(self, masks: np.ndarray, metric: str | None = None) -> np.ndarray:
        """Per-question metric per mask: ``bool[m, n] -> float64[m, q]``."""
        import torch

        from ..tasks.base import METRICS, calibration_bias, question_values

        metric = metric or self.metric
        if metric not in METRICS:
            raise DistributedError(f"Unknown metric '{metric}'; choose one of {METRICS}.")
        logits = torch.from_numpy(self._logits_for(masks))  # [m, q_all, c]
        bias = None
        if metric == "calibrated_accuracy":
            if self.n_calibration == 0:
                raise DistributedError("calibrated_accuracy needs the game built with metric='calibrated_accuracy'.")
            bias = calibration_bias(logits[:, self.n_questions :])
        values = question_values(logits[:, : self.n_questions], self.correct_index, metric, bias)
        return values.double().numpy()

    def candidate_logits(self, masks: np.ndarray) -> np.ndarray:
        """Logits of the candidate tokens at the answer position: ``float32[m, q, c]``."""
        return self._logits_for(masks)[:, : self.n_questions]

    def describe(self) -> dict[str, Any]:
        """The game's provenance (as the in-process game gives it) plus the pool's."""
        return {**self.info["describe"], "distributed": self.pool.describe()}

    # ------------------------------------------------------------------ evaluation

    def _logits_for(self, masks: Any) -> np.ndarray:
        masks = self._check_masks(masks)
        todo = self._store.missing(masks)
        if len(todo):
            self._evaluate(todo)
        return self._store.stack(masks)

    def _evaluate(self, todo: np.ndarray) -> None:
        from tqdm.auto import tqdm

        size = self.chunk_masks or auto_chunk_masks(len(todo), self.pool.workers_alive, self.info["preferred_chunk"])
        chunks = [todo[start : start + size] for start in range(0, len(todo), size)]
        bar = tqdm(total=len(todo), desc="ablations", unit="mask", disable=not self.progress, leave=False)

        def merge(index: int, logits: np.ndarray) -> None:
            self._merge(chunks[index], logits)
            bar.update(len(chunks[index]))

        def report(progress: Progress) -> None:
            self.last_progress = progress
            bar.set_postfix_str(f"{progress.rows_per_s:.1f} rows/s, workers {progress.workers_alive}/"
                                f"{progress.workers_total}" + (f", {progress.retries} retried" if progress.retries else ""))
            if self.on_progress is not None:
                self.on_progress(progress)

        try:
            self.pool.run_chunks(self.spec, chunks, merge, report, rows_per_mask=self.rows_per_mask)
        finally:
            bar.close()

    def _merge(self, masks: np.ndarray, logits: np.ndarray) -> None:
        expected = (len(masks), self.n_questions + self.n_calibration)
        if logits.shape[:2] != expected:
            raise DistributedError(f"a worker returned logits of shape {logits.shape} for {expected} (masks, questions)")
        # A chunk is delivered once; this guards the store against any mask arriving twice.
        fresh = [i for i, mask in enumerate(masks) if mask not in self._store]
        if fresh:
            self._store.add(masks[fresh], logits[fresh])
            self.n_evaluated_masks += len(fresh)
            self.n_row_evaluations += len(fresh) * self.rows_per_mask

    def _check_masks(self, masks: Any) -> np.ndarray:
        return checked_masks(masks, self.player_names, DistributedError)


def _claim_store(directory: Path, fingerprint: dict[str, Any]) -> None:
    """The game's fingerprint in ``game.json`` (the in-process game's format, so either side can
    reopen the store), or a :class:`DistributedError` for a folder of another game."""
    claim_store_folder(directory, fingerprint, DistributedError)


def distributed_game_factory(pool: WorkerPool, template: GameSpec, **options: Any) -> Callable[[Any, Path | None], DistributedGame]:
    """``(players, store_dir) -> DistributedGame``: the attribution runner's game factory
    (:data:`headspex.attribution.GameFactory`) over a pool; ``template`` gives everything but
    the players; ``options`` go to :class:`DistributedGame`."""

    def make_game(players: Any, store_dir: Path | None) -> DistributedGame:
        return DistributedGame(pool, template.with_players(players), store_dir=store_dir, **options)

    return make_game


def attribution_game_factory(pool: WorkerPool, task: TaskSpec, config: Any, *, memory_budget_mb: float | None = None,
                             progress: bool = False) -> Callable[[Any, Path | None], DistributedGame]:
    """The game factory of :func:`headspex.attribution.attribute` over a pool: the same game
    settings as its in-process factory (mode, split, metric, questions, seed from ``config``,
    an :class:`~headspex.attribution.AttributionConfig`), each unit's store in its ``game_cache``."""
    template = GameSpec(pool.model, task, ("L0H0",), mode=str(config.mode), split=config.split,
                        metric=str(config.metric), n_questions=config.n_questions, seed=config.seed,
                        memory_budget_mb=memory_budget_mb)
    return distributed_game_factory(pool, template, progress=progress)


def prune_game_builder(pool: WorkerPool, config: Any, *, memory_budget_mb: float | None = None,
                       progress: bool = False) -> Callable[..., DistributedGame]:
    """``(players, split, metric, store_dir) -> DistributedGame`` for :func:`headspex.pruning.prune`, with its
    task (:func:`headspex.pruning.pipeline.task_options`), mode and seed from ``config``."""
    from ..pruning.pipeline import task_options

    options = task_options(config)
    task = TaskSpec.mmlu(options.pop("subject"), **{k: str(v) if k == "scoring" else v for k, v in options.items()})
    template = GameSpec(pool.model, task, ("L0H0",), mode=str(config.mode), seed=config.seed,
                        memory_budget_mb=memory_budget_mb)

    def build(players: Any, split: str, metric: str, store_dir: Path | None = None) -> DistributedGame:
        spec = replace(template.with_players(players), split=split, metric=str(metric))
        return DistributedGame(pool, spec, store_dir=store_dir, progress=progress)

    return build
