"""The exact MMLU prompt strings and answer tokens: letter scoring and cloze scoring.

Prompt template (letter scoring, as in the Hendrycks code and lm-eval's ``mmlu``)
-------------------------------------------------------------------------------
::

    The following are multiple choice questions (with answers) about {subject}.\\n\\n
    [for each of the k shots:]
    {question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer: {letter}\\n\\n
    [then the scored question:]
    {question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:

``{subject}`` is the normalised name with spaces (``high school us history``);
``{question}`` is stripped of surrounding whitespace (as lm-eval does), choices are used
verbatim. The prompt ends right after ``Answer:``; the answer is one of the tokens
``" A"`` .. ``" D"`` (a space and the letter), which must each be a single token.

With ``chat_template=True`` the *user* message is that prompt without its final
``"\\nAnswer:"``, the tokenizer's chat template opens the assistant turn
(``add_generation_prompt=True``), and ``"Answer:"`` is written as the start of the
assistant's reply, so the next token is again ``" A"`` .. ``" D"``.

Cloze scoring (lm-eval's ``mmlu_continuation`` form): context
``"The following are questions (with answers) about {subject}.\\n\\n"`` + shots
``"Question: {question}\\nAnswer: {correct choice}\\n\\n"`` + ``"Question: {question}\\nAnswer:"``,
continuations ``" {choice}"``, tokenized as in running text (:func:`continuation_token_ids`);
the model scores them in :func:`headspex.game.scoring.cloze_choice_logliks`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from headspex.tasks.mmlu.errors import AnswerTokenError, MMLUError
from headspex.tasks.mmlu.questions import LETTERS, MMLUQuestion, subject_display_name

HEADER_TEMPLATE = "The following are multiple choice questions (with answers) about {subject}.\n\n"
QUESTION_TEMPLATE = "{question}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
SHOT_SUFFIX_TEMPLATE = " {letter}\n\n"
CLOZE_HEADER_TEMPLATE = "The following are questions (with answers) about {subject}.\n\n"
CLOZE_QUESTION_TEMPLATE = "Question: {question}\nAnswer:"


# ----------------------------------------------------------------------------- letter scoring


def format_question(question: MMLUQuestion) -> str:
    """``"{question}\\nA. {a}\\nB. {b}\\nC. {c}\\nD. {d}\\nAnswer:"`` (question stripped)."""
    a, b, c, d = question.choices
    return QUESTION_TEMPLATE.format(question=question.question.strip(), a=a, b=b, c=c, d=d)


def format_prompt(question: MMLUQuestion, shots: Sequence[MMLUQuestion] = (), subject: str | None = None) -> str:
    """The full letter-scoring prompt of the module docstring, ending with ``"Answer:"``."""
    header = HEADER_TEMPLATE.format(subject=subject_display_name(subject or question.subject))
    shot_text = "".join(format_question(s) + SHOT_SUFFIX_TEMPLATE.format(letter=s.answer_letter) for s in shots)
    return header + shot_text + format_question(question)


def apply_chat_format(tokenizer: Any, prompt: str) -> str:
    """Wrap a letter prompt in the tokenizer's chat template; ``"Answer:"`` opens the reply.

    Args:
        tokenizer: a transformers tokenizer with a ``chat_template``.
        prompt: a prompt from :func:`format_prompt` (ends with ``"\\nAnswer:"``).

    Returns:
        Chat text ending with ``"Answer:"`` inside the assistant turn.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise MMLUError("chat_template=True but this tokenizer has no chat template")
    user = prompt.removesuffix("Answer:").rstrip("\n")
    chat = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    return chat + "Answer:"


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` alone, without special tokens (no BOS)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def answer_token_ids(tokenizer: Any, letters: Sequence[str] = LETTERS) -> tuple[list[int], str]:
    """Token ids of the answer letters, each required to be exactly one token.

    Tries ``" A"`` .. ``" D"`` (what follows ``"Answer:"``); if any is several tokens but every
    bare ``"A"`` .. ``"D"`` is one, falls back to the bare letters with a warning.

    Returns:
        (``c`` token ids, the prefix used: ``" "`` or ``""``). Raises :class:`AnswerTokenError`.
    """
    spaced = {letter: encode_text(tokenizer, " " + letter) for letter in letters}
    if all(len(ids) == 1 for ids in spaced.values()):
        return [spaced[letter][0] for letter in letters], " "
    bare = {letter: encode_text(tokenizer, letter) for letter in letters}
    if all(len(ids) == 1 for ids in bare.values()):
        warnings.warn(
            "The answer tokens ' A'..' D' are not single tokens of this tokenizer "
            f"({ {k: v for k, v in spaced.items()} }); scoring the bare letters 'A'..'D' instead.",
            stacklevel=2,
        )
        return [bare[letter][0] for letter in letters], ""
    raise AnswerTokenError(
        "Each answer letter must be exactly one token; with a leading space got "
        f"{ {k: v for k, v in spaced.items()} } and without got { {k: v for k, v in bare.items()} }."
    )


# ----------------------------------------------------------------------------- cloze scoring


@dataclass(frozen=True)
class ClozeItem:
    """One cloze-scored question: the context and the continuations to score.

    Attributes:
        context: text ending with ``"Answer:"``.
        continuations: the ``c`` (4) continuation texts, each ``" {choice}"``.
        correct: index of the right continuation.
    """

    context: str
    continuations: tuple[str, ...]
    correct: int


def format_cloze_context(question: MMLUQuestion, shots: Sequence[MMLUQuestion] = (), subject: str | None = None) -> str:
    """Cloze context (module docstring): header, shots with their answer text, the question."""
    header = CLOZE_HEADER_TEMPLATE.format(subject=subject_display_name(subject or question.subject))
    shot_text = "".join(
        CLOZE_QUESTION_TEMPLATE.format(question=s.question.strip()) + f" {s.choices[s.answer]}\n\n" for s in shots
    )
    return header + shot_text + CLOZE_QUESTION_TEMPLATE.format(question=question.question.strip())


def cloze_items(
    questions: Sequence[MMLUQuestion], subject: str | None = None, shots: Sequence[MMLUQuestion] = ()
) -> list[ClozeItem]:
    """Cloze items for ``questions``: continuations ``" {choice}"`` for the 4 choices."""
    return [
        ClozeItem(format_cloze_context(q, shots, subject), tuple(" " + c for c in q.choices), q.answer)
        for q in questions
    ]


def continuation_token_ids(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of a cloze context and of one continuation as it follows that context.

    As lm-eval: the whole string ``context + continuation`` is tokenized and the part after
    the context's own tokens is the continuation, so the continuation is tokenized as the
    model would see it in running text. When the two tokenizations do not line up (a merge
    across the boundary) the continuation is tokenized alone.

    Returns:
        (context ids as ``tokenizer(context)`` gives them, special tokens included;
        continuation ids).
    """
    context_ids = list(tokenizer(context)["input_ids"])
    whole = list(tokenizer(context + continuation)["input_ids"])
    if whole[: len(context_ids)] == context_ids and len(whole) > len(context_ids):
        return context_ids, whole[len(context_ids):]
    return context_ids, encode_text(tokenizer, continuation)
