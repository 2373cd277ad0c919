"""Seeded random-initialised test models with a tiny trained tokenizer (no files, no hub)."""

from __future__ import annotations

from typing import Any

import torch

from .loading import ModelLoadError, wrap_model

TINY_ARCHITECTURES = ("tiny-gpt2", "tiny-llama")

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
