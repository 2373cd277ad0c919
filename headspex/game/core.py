"""The AblationGame: a task's value as a function of which components are kept.

``game(masks bool[m, n]) -> float[m]`` is the call shape of shapiq's approximators and of
:mod:`headspex.engine`. Each value is the mean, over the task's questions, of a metric of
the logits at the answer position restricted to the candidate tokens.

Where the time goes, and what the game does about it:

* **Many ablations per forward.** Rows of one micro-batch are (mask, question) pairs; the
  hook manager gets one mask row per batch row.
* **Nothing recomputed that an ablation cannot change.** Every player sits at layer ≥ L, so
  the residual stream entering block L (and the block's other inputs: attention mask,
  rotary embeddings, position ids) is computed once per question and blocks L… run per
  row. TransformerLens's ``start_at_layer`` still runs blocks 0…L-1, so the game calls the
  bridge's blocks itself (:mod:`headspex.game.blocks`).
* **Block L's attention once per question; the last block at the scored positions only.**
  Block L's norm, q/k/v and attention precede every ablation site, so its per-head outputs
  are cached per question; when L is the last block it runs only where scores are read
  (:mod:`headspex.game.block_tail`; ``shortcuts``, checked against the general path once).
* **Shared prefixes once per mask.** The shots of a k-shot prompt, or a cloze question's
  context, run once per mask; each sequence's rest attends to their keys and values
  (:mod:`headspex.game.shared_prefix`, checked against the general path once).
* **Fused attention.** The bridge rebuilds attention eagerly so pattern hooks can fire; the
  game hooks none of them, so blocks it runs use PyTorch's SDPA kernel through the wrapped
  HF attention (:mod:`headspex.game.fused_attention`), checked against the bridge's path
  once per game.
* **Only the logits that are needed.** The final norm is applied to the last position only
  (prompts are left-padded, so that is the answer position for every row), and only the
  candidate rows of the unembedding are multiplied: ``[rows, d_model] @ [d_model, c]``
  instead of ``[rows, pos, d_model] @ [d_model, vocab]`` (:mod:`headspex.game.scoring`).
* **Cloze tasks** (a :class:`~headspex.tasks.base.PromptSet` with ``continuation_ids``) run
  one row per (question, choice): context + answer text, scored by the mean full-vocabulary
  log-prob of the answer tokens; only those positions are unembedded.
* **Nothing evaluated twice.** Candidate logits of every evaluated mask are cached in memory
  and, with ``cache_dir``, on disk (one ``.npz`` per evaluated batch), so an interrupted run
  resumes and asking for another metric on the same masks runs nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..ablation import Ablator, ReferenceActivations, encode_prompts, parse_ablation_mode
from ..engine.store import MaskStore, mask_key
from ..components import ComponentLike, Players
from ..tasks.base import PromptSet, calibration_bias, check_disjoint, question_values
from ..types import AblationMode
from .block_tail import capture_attention_outputs, plan_shortcuts, run_blocks_cached
from .blocks import QuestionChunk, question_chunks, run_blocks
from .errors import GameError
from .inputs import checked_masks, checked_metric, claim_store_folder, game_players
from .settings import ACCELERATOR_MEMORY_BUDGET_MB, CPU_MEMORY_BUDGET_MB, _memory_budget, _model_dtype, _run_dtype
from .fused_attention import fusable_layers, use_fused_attention
from .prompts import concat, encodable, take_first, unit_inputs
from .limits import check_context_length, check_question_counts
from . import prefix_path
from .shared_prefix import PrefixGroup
from .scoring import (
    candidate_logits,
    continuation_logliks_from_hidden,
    logit_soft_cap,
    right_aligned_targets,
    unembedding,
)
from .self_check import check_fused_attention, check_shortcuts, verify_game

_REFERENCE_MODES = (AblationMode.MEAN, AblationMode.RESAMPLE)


class AblationGame:
    """Value of a task as a function of which players (components) are kept.

    Args:
        model: a TransformerBridge (:func:`headspex.models.load_model`).
        task: a :class:`headspex.tasks.Task` (MMLU, induction, …).
        players: the components whose presence is toggled (``Players`` or names).
        mode: ablation mode (:class:`headspex.types.AblationMode` or its string), see
            :mod:`headspex.ablation`.
        split: task split whose questions are scored.
        metric: one of :data:`headspex.tasks.METRICS`; ``calibrated_accuracy`` also runs the
            reference questions under each mask to estimate that mask's per-letter bias.
        reference_split: questions for mean/resample statistics and calibration; must be
            disjoint from ``split`` (checked).
        n_questions: score only the first ``n_questions`` of the split.
        dtype: ``None`` (model dtype) or ``"bfloat16"``: run the ablated blocks in a bf16 copy
            of the model (the upstream pass and reference statistics stay in the model dtype).
        memory_budget_mb: activation memory one micro-batch may use (sets its row count).
            Default: 32 MB on CPU, 2048 MB on accelerators. On a 2-core CPU, cache-sized
            batches of a question or two beat large ones (eager attention's score tensors
            stream through memory, and long batches pad short prompts): SmolLM2, layer 20,
            4.7 vs 2.9 rows/s for 32 MB vs 2048 MB.
        cache_dir: folder for the on-disk cache of evaluated masks (resume), or ``None``.
        upstream_cache: compute blocks before the first player's layer once per question.
        fused_attention: run attention through SDPA in the blocks the game computes, where the
            model's attention allows it (:mod:`headspex.game.fused_attention`). On first use the
            game compares the fused and the bridge's path on one unablated question and
            falls back to the bridge's path, with a warning, if their values differ.
        shortcuts: run shared prefixes once per mask, cache block L's attention output per
            question and, when L is the last block, run it at the scored positions only
            (:mod:`headspex.game.block_tail`, :mod:`headspex.game.shared_prefix`);
            ``describe()["shortcuts"]`` says which apply and why not. On first use the game
            compares them with the general path and raises if they differ.
        progress: show a tqdm bar per call.
        seed: seeds resample sources (a function of mask and question, so batching-invariant).
    """

    def __init__(
        self,
        model: Any,
        task: Any,
        players: Players | Sequence[ComponentLike],
        mode: str = "zero",
        *,
        split: str = "attribution",
        metric: str | None = None,
        reference_split: str | None = "reference",
        n_questions: int | None = None,
        n_reference: int | None = None,
        dtype: str | torch.dtype | None = None,
        memory_budget_mb: float | None = None,
        cache_dir: str | Path | None = None,
        upstream_cache: bool = True,
        fused_attention: bool = True,
        shortcuts: bool = True,
        progress: bool = True,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.task = task
        self.players = game_players(players, model)
        self.mode = parse_ablation_mode(mode)
        self.metric = checked_metric(metric or getattr(task, "default_metric", "logprob"))
        self.split = split
        self.upstream_cache = upstream_cache
        self.progress = progress
        self.seed = seed
        self.memory_budget_mb = _memory_budget(memory_budget_mb, model)
        self.run_dtype = _run_dtype(dtype, model)
        self.n_row_evaluations = 0
        check_question_counts(task, split, n_questions, reference_split, n_reference,
                              self.mode in _REFERENCE_MODES or self.metric == "calibrated_accuracy")
        self._load_prompts(split, reference_split, n_questions, n_reference)
        check_context_length(model, {split: self.scored, str(reference_split): self.reference_prompts})
        self._build_ablator()
        self.first_layer = self.players.first_layer if upstream_cache else 0
        computed_layers = range(self.first_layer, model.cfg.n_layers)
        self.fused_layers = fusable_layers(self.run_model, computed_layers) if fused_attention else []
        self._fused_checked = not self.fused_layers
        self._verified = False  # the self-check runs before the first evaluation
        self._soft_cap = logit_soft_cap(model)
        site_kinds = {site.kind for site in self.ablator.sites}
        self.shortcut_plan = plan_shortcuts(self.run_model, self.first_layer, site_kinds, shortcuts)
        self._attention_z: list[torch.Tensor] | None = None  # per chunk: block L's z (cached attention)
        self._shortcut_checked = not self.shortcut_plan.cached_attention
        self._unembed_weight, self._unembed_bias = unembedding(self.run_model)
        self._chunks: list[QuestionChunk] | None = None
        self._shortcuts_enabled = shortcuts
        self._prefix_groups: list[PrefixGroup] | None = None  # the shared-prefix path's groups, when it applies
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self._check_cache_owner()
        self._store = MaskStore(self.cache_dir, self.n_players, value_name="logits")

    # ------------------------------------------------------------------ construction steps

    def _load_prompts(
        self, split: str, reference_split: str | None, n_questions: int | None, n_reference: int | None
    ) -> None:
        """Scored questions, reference questions, and the sequences the game runs."""
        scored = take_first(self.task.prompt_set(split), n_questions)
        calibrate = self.metric == "calibrated_accuracy"
        reference: PromptSet | None = None
        if self.mode in _REFERENCE_MODES or calibrate:
            if reference_split is None:
                raise GameError(f"mode '{self.mode}' / metric '{self.metric}' needs a reference_split.")
            reference = take_first(self.task.prompt_set(reference_split), n_reference)
            check_disjoint({split: scored.question_ids, reference_split: reference.question_ids})
        self.scored = scored
        self.reference_prompts = reference
        # Calibration runs the reference questions under every mask: they become extra rows.
        self._all_prompts = concat(scored, reference) if calibrate and reference is not None else scored
        self.n_questions = len(scored)
        self.n_calibration = len(self._all_prompts) - self.n_questions
        self.candidate_ids = self._all_prompts.candidate_token_ids
        self.correct_index = scored.correct_index
        self.cloze = scored.is_cloze
        if self.cloze and calibrate:
            raise GameError("calibrated_accuracy removes a per-letter bias; it does not apply to cloze "
                            "scoring, where each question has its own answer texts.")
        self._prepare_units()

    def _prepare_units(self) -> None:
        """The sequences the game runs: one per question, or one per (question, choice) for cloze."""
        n_candidates = int(self.candidate_ids.shape[1])
        self._unit_question = np.repeat(np.arange(len(self._all_prompts)), n_candidates if self.cloze else 1)
        self._unit_targets: list[list[int]] | None = None
        if self.cloze:
            assert self._all_prompts.continuation_ids is not None
            self._unit_targets = [list(c) for conts in self._all_prompts.continuation_ids for c in conts]
            # Answers right-aligned like the sequences, -1 before a shorter answer: [units, longest].
            self._unit_target_lengths = torch.tensor([len(t) for t in self._unit_targets])
            self._unit_target_matrix = right_aligned_targets(self._unit_targets)

    def _build_ablator(self) -> None:
        """The model the blocks run in, the reference statistics and the hook manager."""
        # bf16 runs use a converted copy of the model (true bf16 weights, ~2.5x faster on CPUs
        # with bf16 units than autocast); the upstream pass and statistics stay in fp32.
        self.run_model = self.model if self.run_dtype is None else copy.deepcopy(self.model).to(self.run_dtype)
        #: The blocks run in a 16-bit float type (bf16 weights as loaded, or a bf16 run of an fp32
        #: model): every self-check then allows 16-bit rounding instead of fp32's.
        self.low_precision = _model_dtype(self.run_model) in (torch.bfloat16, torch.float16)
        self.reference_activations: ReferenceActivations | None = None
        if self.mode in _REFERENCE_MODES:
            assert self.reference_prompts is not None
            self.reference_activations = ReferenceActivations.compute(
                self.model, encodable(self.reference_prompts), self.players,
                keep_samples=(self.mode == AblationMode.RESAMPLE),
            )
        self.ablator = Ablator(self.run_model, self.players, mode=self.mode, reference=self.reference_activations,
                               seed=self.seed)

    # ------------------------------------------------------------------ public API

    @property
    def n_players(self) -> int:
        return len(self.players)

    @property
    def player_names(self) -> list[str]:
        return self.players.names

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Task value per mask: ``bool[m, n] -> float64[m]`` (mean over questions)."""
        return self.question_values(masks).mean(axis=1)

    def question_values(self, masks: np.ndarray, metric: str | None = None) -> np.ndarray:
        """Per-question metric per mask: ``bool[m, n] -> float64[m, q]``."""
        metric = checked_metric(metric or self.metric)
        logits = torch.from_numpy(self._logits_for(masks))  # [m, q_all, c]
        scored = logits[:, : self.n_questions]
        bias = None
        if metric == "calibrated_accuracy":
            if self.n_calibration == 0:
                raise GameError("calibrated_accuracy needs the game built with metric='calibrated_accuracy'.")
            bias = calibration_bias(logits[:, self.n_questions :])
        values = question_values(scored, self.correct_index, metric, bias)
        return values.double().numpy()

    def candidate_logits(self, masks: np.ndarray) -> np.ndarray:
        """Logits of the candidate tokens at the answer position: ``float32[m, q, c]``;
        cloze tasks: the mean answer-token log-prob of each choice (nats)."""
        return self._logits_for(masks)[:, : self.n_questions]

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance of this game."""
        return {
            "model": getattr(self.model, "headspex_source", type(self.model).__name__),
            "task": self.task.describe() if hasattr(self.task, "describe") else str(self.task),
            "split": self.split,
            "question_ids": list(self.scored.question_ids),
            "players": self.player_names,
            "mode": str(self.mode),
            "metric": self.metric,
            "n_questions": self.n_questions,
            "n_calibration_questions": self.n_calibration,
            "dtype": str(self.run_dtype or _model_dtype(self.model)),
            "seed": self.seed,
            "first_computed_layer": self.first_layer,
            "fused_attention_layers": list(self.fused_layers),
            "shortcuts": self.shortcut_plan.describe(),
        }

    def rows_per_batch(self, positions: int) -> int:
        """Micro-batch rows that fit the memory budget for prompts of ``positions`` tokens."""
        cfg = self.model.cfg
        # Per row and position (floats): residual + attention in/out + q/k/v (~10 d_model),
        # MLP in/gate/post (3 d_mlp), and unless every computed block's attention is fused
        # (tiled, no score tensor) the attention scores and pattern (2 n_heads pos).
        all_fused = len(self.fused_layers) == self.model.cfg.n_layers - self.first_layer
        scores = 0 if all_fused else 2 * cfg.n_heads * positions
        floats = positions * (10 * cfg.d_model + scores + 3 * cfg.d_mlp)
        bytes_per_row = floats * 4
        return max(1, int(self.memory_budget_mb * 2**20 // bytes_per_row))

    def preferred_masks_per_call(self) -> int:
        """The most masks one micro-batch of this game takes: calls with fewer waste batch rows."""
        chunks = self._question_chunks()
        if self._prefix_groups is not None:
            return max(prefix_path.masks_per_batch(self, group) for group in self._prefix_groups)
        return max(self.masks_per_batch(chunk) for chunk in chunks)

    def masks_per_batch(self, chunk: QuestionChunk) -> int:
        """Masks per micro-batch for ``chunk`` (each mask runs all of the chunk's sequences)."""
        positions = self._kept_positions(chunk) or chunk.positions
        return max(1, self.rows_per_batch(positions) // chunk.size)

    def _kept_positions(self, chunk: QuestionChunk) -> int | None:
        """Positions the last block runs at under the scored-positions shortcut (``None``: all)."""
        if not self.shortcut_plan.scored_positions_only:
            return None
        return int(self._unit_target_lengths[chunk.unit_index].max()) if self.cloze else 1

    @property
    def n_cached_masks(self) -> int:
        return len(self._store)

    def cached_masks(self) -> np.ndarray:
        """Every mask evaluated so far (this session or, with ``cache_dir``, earlier ones): bool[k, n]."""
        return self._store.masks()

    # ------------------------------------------------------------------ evaluation

    def _logits_for(self, masks: np.ndarray) -> np.ndarray:
        masks = self._check_masks(masks)
        if len(masks) == 0:  # no mask, no value: float[0, q_all, c]
            return np.zeros((0, len(self._all_prompts), int(self.candidate_ids.shape[1])))
        todo = self._store.missing(masks)
        if len(todo):
            self._store.add(todo, self._evaluate(todo))
        return self._store.stack(masks)

    def _check_masks(self, masks: Any) -> np.ndarray:
        return checked_masks(masks, self.player_names, GameError)

    def _question_chunks(self) -> list[QuestionChunk]:
        """The general path's chunks (only the shared-prefix path's check sequences when it applies)."""
        if self._chunks is None:
            sequences = unit_inputs(self._all_prompts, self._unit_question, self._unit_targets)
            ids, attention = encode_prompts(self.model, sequences)
            plans, tokens, why = prefix_path.plan_for_game(self, ids, attention, self._shortcuts_enabled)
            units = torch.tensor(prefix_path.check_units(plans, tokens)) if plans else torch.arange(len(ids))
            self._chunks = question_chunks(self.model, ids[units], attention[units], self.first_layer,
                                           _model_dtype(self.run_model), self.rows_per_batch)
            for chunk in self._chunks:
                chunk.unit_index = units[chunk.unit_index]
            self._verify_general_path()
            if plans:
                self._build_prefix_path(plans, tokens, ids, attention, why)
            else:
                self._set_shared_prefix(False, why)
        self._verify_general_path()
        if self._prefix_groups is not None:
            return self._chunks
        if self.shortcut_plan.cached_attention and self._attention_z is None:
            with use_fused_attention(self.run_model, self.fused_layers):
                self._attention_z = [
                    capture_attention_outputs(self.run_model, chunk, self.first_layer, chunk.block_kwargs)
                    for chunk in self._chunks
                ]
        return self._chunks

    def _verify_general_path(self) -> None:
        """The fused-attention check and the self-check, once, on the first chunk."""
        assert self._chunks is not None
        if not self._fused_checked:
            check_fused_attention(self, self._chunks[0])
        if not self._verified:
            verify_game(self, self._chunks[0])  # raises GameError rather than return wrong values
            self._verified = True

    def _build_prefix_path(self, plans: list[Any], tokens: list[list[int]], ids: torch.Tensor,
                           attention: torch.Tensor, why: str) -> None:
        """Capture the shared-prefix groups and check them, or fall back to every general chunk."""
        assert self._chunks is not None
        obstacle = prefix_path.static_obstacle(self, self._shortcuts_enabled)  # the fused check may have changed it
        built = obstacle or prefix_path.build_for_game(self, plans, tokens, self._chunks[0])
        if isinstance(built, str):
            self._set_shared_prefix(False, built)
            self._chunks = question_chunks(self.model, ids, attention, self.first_layer,
                                           _model_dtype(self.run_model), self.rows_per_batch)
            return
        self._prefix_groups = built
        self._shortcut_checked = True  # the prefix check ran block L's cached attention too
        self._set_shared_prefix(True, why)

    def _set_shared_prefix(self, applies: bool, why: str) -> None:
        reasons = {**self.shortcut_plan.reasons, "shared_prefix": why}
        self.shortcut_plan = dataclasses.replace(self.shortcut_plan, shared_prefix=applies, reasons=reasons)

    @torch.inference_mode()
    def _evaluate(self, masks: np.ndarray) -> np.ndarray:
        """Candidate logits of new masks: ``bool[m, n] -> float32[m, q_all, c]``."""
        chunks = self._question_chunks()
        n_all, n_units = len(self._all_prompts), len(self._unit_question)
        width = 1 if self.cloze else self.candidate_ids.shape[1]
        results = np.zeros((len(masks), n_units, width), dtype=np.float32)
        total_rows = len(masks) * n_units
        bar = tqdm(total=total_rows, desc="ablations", unit="row", disable=not self.progress, leave=False)
        hooks = self.run_model.hooks(fwd_hooks=self.ablator.fwd_hooks())
        if self._prefix_groups is not None:
            with hooks, use_fused_attention(self.run_model, self.fused_layers):
                results = prefix_path.evaluate_groups(self, self._prefix_groups, masks, bar)
            self.n_row_evaluations += total_rows
            bar.close()
            return results.reshape(len(masks), n_all, -1)
        with hooks, use_fused_attention(self.run_model, self.fused_layers):
            if not self._shortcut_checked:
                check_shortcuts(self, chunks[0], masks[:1])
            for index, chunk in enumerate(chunks):
                masks_per_batch = self.masks_per_batch(chunk)
                z = self._attention_z[index] if self._attention_z is not None else None
                for start in range(0, len(masks), masks_per_batch):
                    block = masks[start : start + masks_per_batch]
                    logits = self._run_rows(chunk, block, z)  # [len(block) * qc, c or 1]
                    logits = logits.view(len(block), chunk.size, -1).float().cpu().numpy()
                    results[start : start + len(block)][:, chunk.unit_index.numpy()] = logits
                    self.n_row_evaluations += len(block) * chunk.size
                    bar.update(len(block) * chunk.size)
        bar.close()
        return results.reshape(len(masks), n_all, -1)  # cloze: units are question-major

    def _run_rows(self, chunk: QuestionChunk, masks: np.ndarray, z: torch.Tensor | None = None) -> torch.Tensor:
        """Candidate logits of rows (mask-major): ``float[len(masks) * qc, c]``; cloze: the
        mean answer-token log-prob of each row's sequence, ``float[len(masks) * qc, 1]``.
        With ``z`` (block L's cached attention output), the shortcuts' path; else the general one."""
        n_masks, qc = len(masks), chunk.size
        row_masks = torch.from_numpy(np.repeat(masks, qc, axis=0))
        sources = self._resample_sources(masks, chunk) if self.mode == AblationMode.RESAMPLE else None
        self.ablator.set_mask(row_masks, resample_sources=sources)
        if z is None:
            hidden = run_blocks(self.run_model, chunk, n_masks, self.first_layer)
        else:
            hidden = run_blocks_cached(self.run_model, chunk, z, n_masks, self.first_layer, self._kept_positions(chunk))
        return self._score_rows(hidden, chunk.unit_index.repeat(n_masks))

    def _score_rows(self, hidden: torch.Tensor, rows_unit: torch.Tensor) -> torch.Tensor:
        """Scores of rows from their final hidden states ``[rows, pos, d]`` (left-aligned to the
        end: the scored positions are the last ones) and their sequences ``long[rows]``:
        candidate logits ``[rows, c]``, or cloze scores ``[rows, 1]``."""
        if self.cloze:
            return self._cloze_scores(hidden, rows_unit)
        # Letter tasks: one unit per question, so the unit indexes the candidate rows.
        return candidate_logits(self.run_model.ln_final, hidden, self.candidate_ids[rows_unit],
                                self._unembed_weight, self._unembed_bias, self._soft_cap)

    def _cloze_scores(self, hidden: torch.Tensor, rows_unit: torch.Tensor) -> torch.Tensor:
        """Mean log-prob (nats per token) of each row's answer tokens: ``[rows, pos, d] -> [rows, 1]``.

        Only the last ``max answer length`` positions are normalised and unembedded, in
        slices whose ``[slice, span, vocab]`` logits fit the memory budget.
        """
        span = int(self._unit_target_lengths[rows_unit].max())
        targets = self._unit_target_matrix[rows_unit, -span:]  # [rows, span], -1 = before the answer
        vocab = self._unembed_weight.shape[0]
        per_slice = max(1, int(self.memory_budget_mb * 2**20 // (4 * span * vocab)))
        scores = continuation_logliks_from_hidden(
            hidden[:, -span:, :], targets, self.run_model.ln_final, self._unembed_weight, self._unembed_bias,
            reduction="mean", rows_per_slice=per_slice, soft_cap=self._soft_cap,
        )
        return scores[:, None]

    def _resample_sources(self, masks: np.ndarray, chunk: QuestionChunk) -> np.ndarray:
        # A function of (seed, mask, question) only, so values do not depend on batching.
        assert self.reference_activations is not None
        n_ref = self.reference_activations.n_prompts
        sources = []
        for mask in masks:
            mask_hash = zlib.crc32(mask_key(mask))
            # Keyed by question, so the choices of a cloze question share their source.
            for question in self._unit_question[chunk.unit_index.numpy()].tolist():
                rng = np.random.default_rng([self.seed, mask_hash, question])
                sources.append(int(rng.integers(n_ref)))
        return np.asarray(sources)

    # ------------------------------------------------------------------ disk cache

    def _fingerprint(self) -> dict[str, Any]:
        info = self.describe()
        info["candidate_token_ids"] = hashlib.sha1(self.candidate_ids.numpy().tobytes()).hexdigest()
        # Neither upstream caching nor the attention kernel changes values (beyond rounding).
        info.pop("first_computed_layer", None)
        info.pop("fused_attention_layers", None)
        info.pop("shortcuts", None)  # exact shortcuts do not change values (checked on first use)
        return info

    def _check_cache_owner(self) -> None:
        """Refuse a cache folder written by a game with other players, task or mode."""
        assert self.cache_dir is not None
        claim_store_folder(self.cache_dir, self._fingerprint(), GameError)


__all__ = ["ACCELERATOR_MEMORY_BUDGET_MB", "CPU_MEMORY_BUDGET_MB", "AblationGame"]

