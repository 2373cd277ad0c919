"""Held-out evaluation of removal sets: per-question metrics, bootstrap intervals, verdicts.

Raw accuracy, calibrated accuracy (per-letter bias from the reference split under the same
pruning) and mean log-prob of the correct answer on held-out questions, with seeded
question-bootstrap 95 % intervals and paired differences between strategies.
:func:`check_questions_disjoint` raises when the evaluation questions intersect the
attribution questions. Torch is imported only by the functions that take tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.surrogate import removal_mask
from ..types import Metric
from .errors import PruningError, QuestionOverlapError

if TYPE_CHECKING:
    import torch

#: The held-out metrics of a letter-scored task, in report order.
EVAL_METRICS: tuple[Metric, ...] = (Metric.ACCURACY, Metric.CALIBRATED_ACCURACY, Metric.LOGPROB)
#: The subset measured under cloze scoring: calibration removes a letter bias; cloze has none.
CLOZE_EVAL_METRICS: tuple[Metric, ...] = (Metric.ACCURACY, Metric.LOGPROB)


def question_ids_of_game(game: Any) -> list[str]:
    """Question ids a game scores (``game.question_ids`` or its task split, first ``n_questions``)."""
    ids = getattr(game, "question_ids", None)
    if ids is None:
        prompt_set = game.task.prompt_set(game.split)
        ids = list(prompt_set.question_ids)[: game.n_questions]
    return [str(i) for i in ids]


def check_questions_disjoint(attribution_ids: Iterable[str], evaluation_ids: Iterable[str], what: str = "evaluation") -> None:
    """Raise :class:`QuestionOverlapError` if any evaluation question was used for attribution."""
    overlap = sorted(set(map(str, attribution_ids)) & set(map(str, evaluation_ids)))
    if overlap:
        raise QuestionOverlapError(
            f"{len(overlap)} {what} question(s) were also used to compute the attribution "
            f"(e.g. {overlap[:3]}); held-out evaluation must use other questions"
        )


def bootstrap_interval(per_question: np.ndarray, indices: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``per_question float[q]`` over resamples ``indices long[B, q]``."""
    means = per_question[indices].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))




def per_question_metrics(eval_logits: torch.Tensor, correct_index: torch.Tensor, reference_logits: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-question held-out metrics of one ablation.

    Args:
        eval_logits: ``float[q, c]`` candidate logits on the evaluation questions.
        correct_index: ``long[q]``.
        reference_logits: ``float[r, c]`` candidate logits on the reference questions under the
            same ablation (the calibration bias is their mean restricted log-prob).

    Returns:
        ``{"accuracy": 0/1[q], "calibrated_accuracy": 0/1[q], "logprob": nats[q]}``.
    """
    from ..tasks.base import calibration_bias, question_values

    bias = calibration_bias(reference_logits)
    return {
        "accuracy": question_values(eval_logits, correct_index, "accuracy").double().numpy(),
        "calibrated_accuracy": question_values(eval_logits, correct_index, "calibrated_accuracy", bias).double().numpy(),
        "logprob": question_values(eval_logits, correct_index, "logprob").double().numpy(),
    }


def game_metrics_fn(game: Any) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Per-question held-out metrics from an AblationGame built with
    ``metric="calibrated_accuracy"`` (so each mask also runs the reference questions and gets
    its own per-letter bias). Candidate logits are cached, so the three metrics cost one run.
    A cloze game (any metric) gives accuracy and log-prob only: there is no letter bias."""
    if getattr(game, "cloze", False):
        return lambda masks: {m: game.question_values(masks, m) for m in CLOZE_EVAL_METRICS}
    if getattr(game, "metric", None) != "calibrated_accuracy":
        raise PruningError("Build the evaluation game with metric='calibrated_accuracy' so every mask "
                           "gets its own calibration bias from the reference split")
    return lambda masks: {m: game.question_values(masks, m) for m in EVAL_METRICS}


def logits_metrics_fn(
    eval_logits_fn: Callable[[np.ndarray], Any],
    reference_logits_fn: Callable[[np.ndarray], Any],
    correct_index: torch.Tensor,
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Per-question metrics from candidate-logit functions ``bool[m, n] -> float[m, q|r, c]``
    on the evaluation and reference questions (see :func:`per_question_metrics`)."""

    def metrics(masks: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        eval_logits = torch.as_tensor(eval_logits_fn(masks))
        ref_logits = torch.as_tensor(reference_logits_fn(masks))
        rows = [per_question_metrics(eval_logits[m], correct_index, ref_logits[m]) for m in range(len(masks))]
        return {name: np.stack([r[name] for r in rows]) for name in EVAL_METRICS}

    return metrics


def _unique_removal_masks(
    removals: Mapping[str, Mapping[int, Sequence[int]]], n_players: int
) -> tuple[list[np.ndarray], list[tuple[str, int]], dict[tuple[str, int], int]]:
    """Keep-masks to evaluate (the unpruned one first; identical sets once), the (strategy, k)
    keys in order (``("unpruned", 0)`` first) and each key's row among the masks."""
    masks, keys = [removal_mask(n_players, [])], [("unpruned", 0)]
    mask_index: dict[tuple[int, ...], int] = {(): 0}
    row_of: dict[tuple[str, int], int] = {("unpruned", 0): 0}
    for strategy, by_k in removals.items():
        for k, removed in by_k.items():
            key = tuple(sorted(int(i) for i in removed))
            if key not in mask_index:  # identical sets are evaluated once
                mask_index[key] = len(masks)
                masks.append(removal_mask(n_players, key))
            row_of[(strategy, int(k))] = mask_index[key]
            keys.append((strategy, int(k)))
    return masks, keys, row_of


def _paired_rows(removals: Mapping[str, Mapping[int, Sequence[int]]], paired_against: str | None) -> list[tuple[str, int]]:
    """(strategy, k) of every other strategy's set that ``paired_against`` also has a set for."""
    if paired_against is None or paired_against not in removals:
        return []
    return [(strategy, int(k)) for strategy, by_k in removals.items() if strategy != paired_against
            for k in by_k if int(k) in removals[paired_against]]


def evaluate_removals(
    removals: Mapping[str, Mapping[int, Sequence[int]]],
    n_players: int,
    metrics_fn: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    paired_against: str | None = None,
) -> dict[str, Any]:
    """Held-out metrics of every (strategy, k) removal set, with bootstrap intervals.

    Args:
        removals: ``{strategy: {k: removed player indices}}``.
        n_players: n.
        metrics_fn: keep-masks ``bool[m, n]`` → ``{metric: float[m, q]}`` per-question values on
            the held-out questions: accuracy and logprob, and calibrated_accuracy where it
            applies (see :func:`game_metrics_fn` for an AblationGame, :func:`logits_metrics_fn`
            for raw candidate logits).
        n_bootstrap: resamples of the questions (same resamples for every row, so intervals of
            differences are paired).
        seed: bootstrap seed.
        paired_against: strategy whose differences to every other strategy (same k) get
            paired intervals (e.g. the interaction-informed one).

    Returns:
        JSON-able dict: ``unpruned`` and ``rows`` (strategy, k, removed, metric → mean/lo/hi),
        ``paired`` differences, and ``per_question`` arrays.
    """
    masks, keys, row_of = _unique_removal_masks(removals, n_players)
    values = metrics_fn(np.stack(masks))
    missing = [m for m in CLOZE_EVAL_METRICS if m not in values]
    if missing:
        raise PruningError(f"metrics_fn must return at least {tuple(map(str, CLOZE_EVAL_METRICS))}; missing {missing}")
    metric_names = [m for m in EVAL_METRICS if m in values]
    per_mask = [{m: np.asarray(values[m][row], dtype=np.float64) for m in metric_names} for row in range(len(masks))]
    n_q = int(per_mask[0]["logprob"].shape[0])
    indices = np.random.default_rng(seed).integers(0, n_q, size=(n_bootstrap, n_q))

    def summary(values: np.ndarray) -> dict[str, float]:
        lo, hi = bootstrap_interval(values, indices)
        return {"mean": float(values.mean()), "lo": lo, "hi": hi}

    rows = []
    for strategy, k in keys[1:]:
        metrics = per_mask[row_of[(strategy, k)]]
        removed = sorted(int(i) for i in removals[strategy][k])
        rows.append({"strategy": strategy, "k": k, "removed": removed,
                     **{m: summary(metrics[m]) for m in metric_names},
                     "delta_vs_unpruned": {m: summary(metrics[m] - per_mask[0][m]) for m in metric_names}})
    paired = []
    for strategy, k in _paired_rows(removals, paired_against):
        ours, theirs = per_mask[row_of[(paired_against, k)]], per_mask[row_of[(strategy, k)]]
        paired.append({"strategy": strategy, "k": k, **{m: summary(ours[m] - theirs[m]) for m in metric_names}})
    return {
        "n_questions": n_q,
        "metrics": metric_names,
        "n_bootstrap": n_bootstrap,
        "bootstrap_seed": seed,
        "interval": "95% percentile bootstrap over questions",
        "unpruned": {m: summary(per_mask[0][m]) for m in metric_names},
        "rows": rows,
        "paired_against": paired_against,
        "paired": paired,
        "per_question": {f"{s}|{k}": {m: per_mask[row_of[(s, k)]][m].tolist() for m in metric_names} for s, k in keys},
    }


def verdicts(evaluation: Mapping[str, Any], metric: str = "logprob") -> dict[str, dict[str, int]]:
    """Count wins / ties / losses of ``paired_against`` vs each strategy: a win or loss needs the
    paired 95 % interval of the difference to exclude 0; everything else is a tie."""
    out: dict[str, dict[str, int]] = {}
    for row in evaluation.get("paired", []):
        tally = out.setdefault(row["strategy"], {"wins": 0, "ties": 0, "losses": 0})
        lo, hi = row[metric]["lo"], row[metric]["hi"]
        tally["wins" if lo > 0 else "losses" if hi < 0 else "ties"] += 1
    return out
