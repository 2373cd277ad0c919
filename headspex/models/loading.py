"""Loading transformers models from files, folders or the hub and wrapping them as bridges.

Every loader returns a :class:`transformer_lens.model_bridge.TransformerBridge` that wraps
a plain transformers model (eager attention, so hooks see every head).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import HeadspexError
from .files import check_gguf_file


class ModelLoadError(HeadspexError):
    """A model could not be loaded; the message says why and what to do instead."""


def _quiet_transformers() -> None:
    # transformers and TransformerLens log deprecation chatter on every load.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    logging.getLogger("transformer_lens").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*torch_dtype.*")


def wrap_model(hf_model: Any, tokenizer: Any, name: str) -> Any:
    """Wrap an already-loaded transformers causal LM in a TransformerBridge.

    ``name`` is only used by TransformerLens to pick the architecture adapter's
    defaults; no hub access happens because ``hf_model`` is given.
    """
    from transformer_lens.model_bridge import TransformerBridge

    _quiet_transformers()
    hf_model.eval()
    if not getattr(hf_model.config, "architectures", None):
        # A model built from a config in code, or read from a GGUF file, has no
        # ``architectures``; the bridge picks its adapter from that list.
        hf_model.config.architectures = [type(hf_model).__name__]
    if tokenizer is not None:
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=hf_model, tokenizer=tokenizer, dtype=hf_model.dtype
    )
    if tokenizer is not None:
        # TransformerLens may rebuild the tokenizer to force a BOS token; headspex
        # tokenizes prompts itself and keeps the model's own tokenizer unchanged.
        bridge.tokenizer = tokenizer
    bridge.eval()
    bridge.headspex_source = name
    return bridge


def load_gguf(path: Path, dtype: torch.dtype, name: str) -> Any:
    """A GGUF file (weights dequantised to ``dtype``, tokenizer from the file) as a bridge.

    ``name`` is the hub name of the original model, passed to TransformerLens for its defaults.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF files)
    except ImportError as err:
        raise ModelLoadError("Loading a GGUF file needs the 'gguf' package: pip install gguf") from err
    check_gguf_file(path, deep=False)  # header and version: cheap
    folder, filename = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        hf_model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=filename, dtype=dtype, attn_implementation="eager"
        )
    except Exception:
        # A truncated or damaged file fails deep inside mmap / struct / reshape: the full check
        # names the file and the problem instead; a file that passes it re-raises the original.
        check_gguf_file(path, deep=True)
        raise
    return wrap_model(hf_model, tokenizer, name)


def _load_hf_folder(path: Path, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    hf_model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype, attn_implementation="eager"
    )
    return wrap_model(hf_model, tokenizer, str(path))


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub may and can be reached: the rule of :func:`headspex.hub.hub_reachable`."""
    from ..hub import hub_reachable

    return hub_reachable(timeout_s)


def load_from_hub(name: str, dtype: torch.dtype, device: str) -> Any:
    """A hub model: from the local Hugging Face cache, else from the hub when it answers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()

    def load(local_only: bool) -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
        hf_model = AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype, attn_implementation="eager", local_files_only=local_only
        )
        return hf_model, tokenizer

    try:
        # The local cache first: it works offline and avoids the hub's slow retries.
        hf_model, tokenizer = load(local_only=True)
    except (OSError, ValueError) as cache_err:
        if not _hub_reachable():
            raise ModelLoadError(
                f"'{name}' is not in the local Hugging Face cache and the hub is not reachable "
                f"(offline). Load from a local path instead: load_model('/path/to/hf_folder') "
                "(a folder with config.json), load_model('/path/to/model.gguf'), or the embedded "
                "default load_model('smollm2-135m')."
            ) from cache_err
        try:
            hf_model, tokenizer = load(local_only=False)
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"Could not load '{name}' from the Hugging Face hub ({type(err).__name__}: "
                f"{str(err).splitlines()[0]}). Check the name, or load from a local path: "
                "load_model('/path/to/hf_folder') or load_model('/path/to/model.gguf')."
            ) from err
    return wrap_model(hf_model.to(device), tokenizer, name)


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16}


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float32`` or one of the names in :data:`DTYPES`."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype.lower() not in DTYPES:
        raise ModelLoadError(f"Unknown dtype '{dtype}'; use float32, bfloat16 or float16.")
    return DTYPES[dtype.lower()]


def load_path(path: Path, dtype: torch.dtype) -> Any:
    """A ``.gguf`` file or a Hugging Face folder (``config.json``) as a bridge."""
    if path.suffix == ".gguf":
        if not path.exists():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return load_gguf(path, dtype, _gguf_architecture_name(path))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path} is a folder but has no config.json; expected a Hugging Face model folder.")
        return _load_hf_folder(path, dtype)
    raise ModelLoadError(f"No model at path {path}: expected a .gguf file or a Hugging Face folder.")


def _gguf_architecture_name(path: Path) -> str:
    # The bridge only needs a name to log; the architecture comes from the config.
    return path.stem
