"""One MMLU question and the spelling of subject names, shared by the loaders and prompts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from headspex.tasks.base import question_fingerprint

#: The answer letters, in choice order.
LETTERS: tuple[str, ...] = ("A", "B", "C", "D")


def normalize_subject(name: str) -> str:
    """Canonical subject name: lower case, words joined by ``_`` (``high_school_us_history``)."""
    return re.sub(r"[\s_\-]+", "_", name.strip().lower()).strip("_")


def subject_display_name(name: str) -> str:
    """Subject as written in the prompt header: ``high school us history``."""
    return normalize_subject(name).replace("_", " ")


@dataclass(frozen=True)
class MMLUQuestion:
    """One MMLU question.

    Attributes:
        question: question text as in the source.
        choices: the four answer texts, in A..D order.
        answer: index 0-3 of the correct choice.
        subject: normalised subject name (``high_school_us_history``).
        split: source split: ``"test"``, ``"dev"`` or ``"validation"``.
    """

    question: str
    choices: tuple[str, str, str, str]
    answer: int
    subject: str
    split: str = "test"

    @property
    def question_id(self) -> str:
        """Identity of the question: hash of its text and its four choices (not subject/split)."""
        return question_fingerprint(self.question, *self.choices)

    @property
    def answer_letter(self) -> str:
        """``"A"`` .. ``"D"``."""
        return LETTERS[self.answer]
