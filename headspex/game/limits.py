"""Input checks of an AblationGame that need the task and model: question counts, context length.

Both run in the game's constructor, so an impossible game fails with one clear
:class:`~headspex.game.errors.GameError` before anything is evaluated (rather than inside
transformers: an empty batch, or an ``IndexError`` in the position embedding).
"""

from __future__ import annotations

from typing import Any

from .errors import GameError
from ..tasks.base import PromptSet


def check_question_counts(task: Any, split: str, n_questions: int | None, reference_split: str | None,
                          n_reference: int | None, needs_reference: bool) -> None:
    """Refuse an empty split, ``n_questions`` < 1 or larger than the split, and a reference
    split too small for a mode or metric that needs one."""
    available = len(task.prompt_set(split).prompts)
    if n_questions is not None and not 1 <= n_questions <= available:
        raise GameError(f"n_questions={n_questions}, but split '{split}' of the task holds {available} questions; "
                        f"use 1..{available} (or build the task with more questions)")
    if available == 0:
        raise GameError(f"split '{split}' of the task holds no questions; build the task with some")
    if needs_reference and reference_split is not None:
        reference = len(task.prompt_set(reference_split).prompts)
        if reference == 0 or (n_reference is not None and n_reference < 1):
            raise GameError(f"the ablation mode or metric needs reference questions, but split '{reference_split}' "
                            f"holds {reference} (n_reference={n_reference}); build the task with n_reference >= 1")


def _token_lengths(model: Any, prompts: PromptSet) -> list[int]:
    """Tokens each of the prompt set's sequences feeds the model (cloze: context + longest answer - 1)."""
    if prompts.input_ids is not None:
        lengths = [len(ids) for ids in prompts.input_ids]
    else:
        encoded = model.tokenizer(list(prompts.prompts), add_special_tokens=False)["input_ids"]
        lengths = [len(ids) for ids in encoded]
    if prompts.continuation_ids is not None:
        lengths = [n + max((len(c) for c in conts), default=1) - 1
                   for n, conts in zip(lengths, prompts.continuation_ids)]
    return lengths


def check_context_length(model: Any, prompt_sets: dict[str, PromptSet | None]) -> None:
    """Refuse prompts longer than the model's context (``model.cfg.n_ctx`` tokens), naming the longest.

    Args:
        model: the TransformerBridge (its tokenizer encodes text prompts as the game does).
        prompt_sets: ``{split name: PromptSet or None}`` of every sequence the game will run.
    """
    limit = getattr(getattr(model, "cfg", None), "n_ctx", None)
    if not limit:
        return
    longest: tuple[int, str, str] | None = None
    too_long = 0
    for split, prompts in prompt_sets.items():
        if prompts is None or not len(prompts.prompts):
            continue
        lengths = _token_lengths(model, prompts)
        too_long += sum(n > limit for n in lengths)
        index = max(range(len(lengths)), key=lengths.__getitem__)
        if longest is None or lengths[index] > longest[0]:
            longest = (lengths[index], split, prompts.question_ids[index])
    if longest is not None and longest[0] > int(limit):
        length, split, question = longest
        raise GameError(f"{too_long} prompt(s) exceed the model's context of {int(limit)} tokens; the longest, "
                        f"question {question} of split '{split}', has {length} tokens; use fewer shots, "
                        "shorter prompts, or a model with a longer context")
