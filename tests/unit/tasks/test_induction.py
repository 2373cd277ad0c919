"""InductionTask: structure of the prompts, candidates and splits."""

from __future__ import annotations

from typing import Any

import pytest

from headspex.tasks import InductionTask, PromptSet, SplitOverlapError, Task, check_disjoint


def test_prompts_repeat_and_answer_is_the_next_token(tiny_tok: Any) -> None:
    task = InductionTask(tiny_tok, n_prompts=6, seq_len=8, seed=1, n_candidates=4)
    assert isinstance(task, Task)
    prompt_set = task.prompt_set("attribution")
    assert len(prompt_set) == 6 and prompt_set.input_ids is not None
    for ids, candidates, correct in zip(prompt_set.input_ids, prompt_set.candidate_token_ids, prompt_set.correct_index):
        body = ids[1:] if ids[0] == tiny_tok.bos_token_id else ids
        sequence, repeat = body[:8], body[8:]
        assert len(set(sequence)) == 8 and 1 <= len(repeat) < 8 and repeat == sequence[: len(repeat)]
        answer = sequence[len(repeat)]
        assert candidates[correct].item() == answer
        assert set(candidates.tolist()) <= set(sequence) and len(set(candidates.tolist())) == 4


def test_splits_disjoint_and_seeded(tiny_tok: Any) -> None:
    task = InductionTask(tiny_tok, n_prompts=5, seq_len=6, seed=3, n_reference=4, n_evaluation=7)
    sizes = {split: len(task.prompt_set(split)) for split in task.splits}
    assert sizes == {"reference": 4, "attribution": 5, "evaluation": 7}
    check_disjoint({split: task.prompt_set(split).question_ids for split in task.splits})
    again = InductionTask(tiny_tok, n_prompts=5, seq_len=6, seed=3, n_reference=4, n_evaluation=7)
    assert again.prompt_set("evaluation").input_ids == task.prompt_set("evaluation").input_ids
    other = InductionTask(tiny_tok, n_prompts=5, seq_len=6, seed=4, n_reference=4, n_evaluation=7)
    assert other.prompt_set("evaluation").input_ids != task.prompt_set("evaluation").input_ids


def test_subset_keeps_input_ids(tiny_tok: Any) -> None:
    prompt_set = InductionTask(tiny_tok, n_prompts=4, seq_len=5).prompt_set("reference")
    part = prompt_set.subset([2, 0])
    assert isinstance(part, PromptSet)
    assert part.input_ids == [prompt_set.input_ids[2], prompt_set.input_ids[0]]
    assert part.question_ids == [prompt_set.question_ids[2], prompt_set.question_ids[0]]


def test_check_disjoint_raises_on_overlap() -> None:
    with pytest.raises(SplitOverlapError, match="both"):
        check_disjoint({"attribution": ["a", "b"], "evaluation": ["b"]})
