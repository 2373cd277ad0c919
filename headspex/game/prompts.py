"""The sequences a game runs, from the task's prompt sets.

Letter tasks run one sequence per question. Cloze tasks run one per (question, choice),
question-major: the context followed by the choice's answer tokens but the last (the last
answer token is only predicted, never read).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..ablation import left_padded_ids
from ..tasks.base import PromptSet
from .errors import GameError


def take_first(prompts: PromptSet, n: int | None) -> PromptSet:
    """The first ``n`` questions of ``prompts`` (all of them for ``None``)."""
    if n is None or n >= len(prompts):
        return prompts
    if n <= 0:
        raise GameError(f"n_questions must be positive, got {n}.")
    return prompts.subset(list(range(n)))


def concat(first: PromptSet, second: PromptSet) -> PromptSet:
    """The questions of ``first`` followed by those of ``second`` (letter tasks: calibration rows)."""
    if first.candidate_token_ids.shape[1] != second.candidate_token_ids.shape[1]:
        raise GameError("Scored and reference questions have different numbers of candidates.")
    input_ids = None
    if first.input_ids is not None and second.input_ids is not None:
        input_ids = list(first.input_ids) + list(second.input_ids)
    return PromptSet(
        prompts=list(first.prompts) + list(second.prompts),
        candidate_token_ids=torch.cat([first.candidate_token_ids, second.candidate_token_ids]),
        correct_index=torch.cat([first.correct_index, second.correct_index]),
        question_ids=list(first.question_ids) + list(second.question_ids),
        input_ids=input_ids,
    )


def encodable(prompts: PromptSet) -> list[str] | dict[str, torch.Tensor]:
    """Prompts as text, or as left-padded token ids when the task carries them."""
    if prompts.input_ids is None:
        return list(prompts.prompts)
    return left_padded_ids(prompts.input_ids)


def unit_inputs(
    prompts: PromptSet, unit_question: np.ndarray, unit_targets: Sequence[Sequence[int]] | None
) -> list[str] | dict[str, torch.Tensor]:
    """Every sequence the game runs, as text or left-padded ids.

    Args:
        prompts: the questions the game runs (scored, then calibration questions).
        unit_question: ``int[units]`` the question of each sequence.
        unit_targets: cloze tasks: the answer token ids of each sequence; ``None`` for letter
            tasks (one sequence per question, the prompt itself).

    Returns:
        Letter tasks: :func:`encodable` ``(prompts)``. Cloze tasks: left-padded ids of
        context + answer[:-1]; the answer's log-probs come from its last ``len(answer)`` positions.
    """
    if unit_targets is None:
        return encodable(prompts)
    if prompts.input_ids is None:
        raise GameError("cloze scoring needs the contexts' token ids (PromptSet.input_ids)")
    sequences = [list(prompts.input_ids[q]) + list(target)[:-1] for q, target in zip(unit_question, unit_targets)]
    return left_padded_ids(sequences)


__all__ = ["concat", "encodable", "take_first", "unit_inputs"]
