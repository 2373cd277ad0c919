"""The task protocol shared by every headspex task, and the value functions.

A *task* turns a model into numbers: it owns a few disjoint sets of prompts
(:class:`PromptSet`), each prompt ending exactly where a one-token answer goes,
plus a short list of candidate answer tokens per prompt. Whoever runs the model
(the ablation game) reads the logits at the last position, keeps only the
candidates, and hands ``candidate_logits: float[..., q, c]`` to
:func:`question_values` / :func:`task_value`.

Metrics (all computed with the softmax *restricted* to the ``c`` candidates):

``"logprob"`` (default)
    log-probability of the correct candidate, ``log_softmax(logits)[correct]`` (nats, <= 0).
``"margin"``
    logit of the correct candidate minus the largest other candidate logit (logit units).
``"accuracy"``
    1.0 when the correct candidate's logit is strictly the largest, else 0.0 (ties count
    as wrong, so a constant model never scores by the accident of ``argmax`` picking index 0).
``"calibrated_accuracy"``
    accuracy after subtracting a per-candidate bias from the restricted log-probs; the bias
    is the mean restricted log-prob vector over questions that are *not* scored (the
    "reference" split), see :func:`calibration_bias`. It removes a constant preference for
    one letter (SmolLM2-135M answers "A" ~98% of the time 0-shot).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from ..errors import HeadspexError
from ..types import Metric, choices, parse_enum

#: The metric names as plain strings: ``choices(Metric)``. Kept for :mod:`headspex.game`,
#: which validates its ``metric`` against it; new code uses :class:`headspex.types.Metric`.
METRICS: tuple[str, ...] = tuple(choices(Metric))
#: The pairwise-disjoint splits every built-in task has, in this order.
SPLIT_NAMES: tuple[str, ...] = ("reference", "attribution", "evaluation")


class TaskError(HeadspexError):
    """Base class of the clear, user-facing errors raised by headspex tasks."""


class SplitOverlapError(TaskError):
    """Two splits of a task share a question (or one split repeats a question)."""


def question_fingerprint(*parts: str) -> str:
    """Stable identity of a question: a short SHA-1 of its text parts.

    Args:
        parts: the strings that define the question (e.g. question text and each choice).

    Returns:
        16 hex characters; equal for identical parts, independent of Python's hash seed.
    """
    digest = hashlib.sha1()
    for part in parts:
        # The unit separator keeps ("ab", "c") and ("a", "bc") apart.
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class PromptSet:
    """A batch of prompts that each end where a one-token answer goes.

    Attributes:
        prompts: ``q`` strings; the answer token is the next token after each one.
        candidate_token_ids: ``long[q, c]`` token ids of the candidate answers.
        correct_index: ``long[q]`` index into the ``c`` candidates of the right answer.
        question_ids: ``q`` stable identities (disjointness checks, caching).
        input_ids: optional exact token ids of each prompt. When present the model
            runner should feed these ids and *not* re-tokenize ``prompts`` (which are then
            only a human-readable decoding); tasks built from token sequences (induction)
            set it because decode -> encode does not always round-trip.
        continuation_ids: cloze scoring (optional): per question, the token ids of each of its
            ``c`` continuations (answer texts). ``input_ids`` are then the contexts' ids and
            candidate ``j``'s score is the mean log-probability, over the full vocabulary, of
            continuation ``j``'s tokens after the context (nats per token); the metrics treat
            these ``c`` scores as the candidate logits. ``candidate_token_ids`` holds each
            continuation's first token.
    """

    prompts: list[str]
    candidate_token_ids: Tensor
    correct_index: Tensor
    question_ids: list[str]
    input_ids: list[list[int]] | None = field(default=None)
    continuation_ids: list[list[list[int]]] | None = field(default=None)

    def __post_init__(self) -> None:
        q = len(self.prompts)
        if self.candidate_token_ids.dim() != 2 or self.candidate_token_ids.shape[0] != q:
            raise TaskError(
                f"candidate_token_ids must be long[q={q}, c]; got shape {tuple(self.candidate_token_ids.shape)}"
            )
        if self.correct_index.shape != (q,):
            raise TaskError(f"correct_index must be long[q={q}]; got shape {tuple(self.correct_index.shape)}")
        if len(self.question_ids) != q:
            raise TaskError(f"question_ids has {len(self.question_ids)} entries for {q} prompts")
        if self.input_ids is not None and len(self.input_ids) != q:
            raise TaskError(f"input_ids has {len(self.input_ids)} entries for {q} prompts")
        n_candidates = self.candidate_token_ids.shape[1]
        if self.continuation_ids is not None:
            if self.input_ids is None:
                raise TaskError("a cloze PromptSet (continuation_ids) needs input_ids: the contexts' token ids")
            if len(self.continuation_ids) != q or any(len(c) != n_candidates for c in self.continuation_ids):
                raise TaskError(f"continuation_ids must hold {n_candidates} continuations for each of {q} questions")
            if any(len(ids) == 0 for c in self.continuation_ids for ids in c):
                raise TaskError("every cloze continuation needs at least one token")
        if q and (self.correct_index.min() < 0 or self.correct_index.max() >= n_candidates):
            raise TaskError(f"correct_index must lie in [0, {n_candidates}); got {self.correct_index.tolist()}")

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def is_cloze(self) -> bool:
        """Whether candidates are scored as continuations (see ``continuation_ids``)."""
        return self.continuation_ids is not None

    def subset(self, idx: Sequence[int]) -> PromptSet:
        """The prompts at positions ``idx`` (in that order), as a new PromptSet."""
        positions = [int(i) for i in idx]
        index = torch.tensor(positions, dtype=torch.long)
        return PromptSet(
            prompts=[self.prompts[i] for i in positions],
            candidate_token_ids=self.candidate_token_ids[index],
            correct_index=self.correct_index[index],
            question_ids=[self.question_ids[i] for i in positions],
            input_ids=None if self.input_ids is None else [list(self.input_ids[i]) for i in positions],
            continuation_ids=None if self.continuation_ids is None else [
                [list(ids) for ids in self.continuation_ids[i]] for i in positions
            ],
        )


def parse_metric(metric: str | Metric) -> Metric:
    """``metric`` as a :class:`~headspex.types.Metric`; a one-line :class:`TaskError` naming the
    metrics when it is none of them."""
    try:
        return parse_enum(Metric, metric, "metric")
    except HeadspexError as err:
        raise TaskError(str(err)) from None


@runtime_checkable
class Task(Protocol):
    """What the ablation game needs from a task."""

    name: str
    default_metric: str

    def prompt_set(self, split: str) -> PromptSet:
        """The prompts of one split (one of :attr:`splits`)."""
        ...

    @property
    def splits(self) -> tuple[str, ...]:
        """Names of the pairwise-disjoint splits, e.g. ("reference", "attribution", "evaluation")."""
        ...

    def describe(self) -> dict:
        """JSON-able provenance: source, seed, split sizes, template..."""
        ...


def check_disjoint(named_ids: Mapping[str, Sequence[str]]) -> None:
    """Raise :class:`SplitOverlapError` unless the named id lists are pairwise disjoint.

    A list that repeats an id is an error too (the question would be counted twice).

    Args:
        named_ids: split name -> question ids of that split.
    """
    owner: dict[str, str] = {}
    problems: list[str] = []
    for name, ids in named_ids.items():
        seen: set[str] = set()
        for qid in ids:
            if qid in seen:
                problems.append(f"question {qid} appears twice in '{name}'")
            seen.add(qid)
        for qid in seen:
            if qid in owner:
                problems.append(f"question {qid} is in both '{owner[qid]}' and '{name}'")
            else:
                owner[qid] = name
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} problems)" if len(problems) > 5 else "")
        raise SplitOverlapError(f"Task splits must be pairwise disjoint: {shown}")


class PromptSetsBySplit:
    """The split lookup of a task whose prompt sets are built once, on construction.

    A task sets ``self._prompt_sets`` (split name -> :class:`PromptSet`, for each of
    :data:`SPLIT_NAMES`) and may set ``split_error`` to its own :class:`TaskError` subclass.
    """

    split_error: type[TaskError] = TaskError
    _prompt_sets: dict[str, PromptSet]

    @property
    def splits(self) -> tuple[str, ...]:
        """``("reference", "attribution", "evaluation")``."""
        return SPLIT_NAMES

    def prompt_set(self, split: str) -> PromptSet:
        """The prompts of one split; an error naming the splits for any other name."""
        if split not in self._prompt_sets:
            raise self.split_error(f"Unknown split '{split}'; splits: {list(SPLIT_NAMES)}")
        return self._prompt_sets[split]


# ----------------------------------------------------------------------------- value functions


def restricted_log_probs(candidate_logits: Tensor) -> Tensor:
    """Log-softmax over the candidates only.

    Args:
        candidate_logits: ``float[..., q, c]`` logits of the candidate tokens.

    Returns:
        ``float[..., q, c]`` log-probabilities (nats) that sum (in prob space) to 1 over ``c``.
    """
    return torch.log_softmax(candidate_logits.float(), dim=-1)


def calibration_bias(reference_logits: Tensor) -> Tensor:
    """Per-candidate bias for ``"calibrated_accuracy"``, from non-scored questions.

    Args:
        reference_logits: ``float[..., r, c]`` candidate logits of the reference questions
            (leading dims, e.g. ``n_masks``, are kept so each ablation gets its own bias).

    Returns:
        ``float[..., c]`` mean restricted log-prob vector over the ``r`` questions (nats).
    """
    if reference_logits.shape[-2] == 0:
        raise TaskError("calibration_bias needs at least one reference question")
    return restricted_log_probs(reference_logits).mean(dim=-2)


def _correct_and_best_other(scores: Tensor, correct_index: Tensor) -> tuple[Tensor, Tensor]:
    # scores: [..., q, c]; correct_index: [q] -> broadcast over leading dims.
    index = correct_index.to(scores.device).long().expand(scores.shape[:-1]).unsqueeze(-1)
    correct = scores.gather(-1, index).squeeze(-1)
    others = scores.scatter(-1, index, float("-inf"))
    return correct, others.max(dim=-1).values


def question_values(
    candidate_logits: Tensor,
    correct_index: Tensor,
    metric: str | Metric = Metric.LOGPROB,
    calibration_bias: Tensor | None = None,
) -> Tensor:
    """Value of each question under ``metric`` (see the module docstring).

    Args:
        candidate_logits: ``float[..., q, c]`` logits of the candidate tokens (any leading
            dims, e.g. ``[n_masks, q, c]``).
        correct_index: ``long[q]`` index of the right candidate.
        metric: a :class:`~headspex.types.Metric` or its plain-string value.
        calibration_bias: ``float[c]`` or ``float[..., c]`` (from :func:`calibration_bias`);
            required for ``"calibrated_accuracy"`` and ignored otherwise.

    Returns:
        ``float[..., q]``: nats for "logprob", logit units for "margin", 0/1 for the accuracies.
    """
    metric = parse_metric(metric)
    if candidate_logits.dim() < 2 or candidate_logits.shape[-2] != correct_index.shape[-1]:
        raise TaskError(
            f"candidate_logits must be float[..., q, c] with q = len(correct_index) = "
            f"{correct_index.shape[-1]}; got {tuple(candidate_logits.shape)}"
        )
    logits = candidate_logits.float()
    if metric == Metric.LOGPROB:
        log_probs = restricted_log_probs(logits)
        index = correct_index.to(logits.device).long().expand(logits.shape[:-1]).unsqueeze(-1)
        return log_probs.gather(-1, index).squeeze(-1)
    if metric == Metric.MARGIN:
        correct, best_other = _correct_and_best_other(logits, correct_index)
        return correct - best_other
    if metric == Metric.ACCURACY:
        correct, best_other = _correct_and_best_other(logits, correct_index)
        return (correct > best_other).float()
    if calibration_bias is None:
        raise TaskError(
            "metric 'calibrated_accuracy' needs calibration_bias: compute it with "
            "calibration_bias(reference_logits) on the task's 'reference' split"
        )
    bias = calibration_bias.to(logits.device).float().unsqueeze(-2)  # [..., 1, c] broadcasts over q
    correct, best_other = _correct_and_best_other(restricted_log_probs(logits) - bias, correct_index)
    return (correct > best_other).float()


def task_value(
    candidate_logits: Tensor,
    correct_index: Tensor,
    metric: str | Metric = Metric.LOGPROB,
    calibration_bias: Tensor | None = None,
) -> Tensor:
    """Mean of :func:`question_values` over the questions.

    Args: as :func:`question_values`.

    Returns:
        ``float[...]``: one value per leading index (a 0-d tensor for ``[q, c]`` input).
    """
    return question_values(candidate_logits, correct_index, metric, calibration_bias).mean(dim=-1)

