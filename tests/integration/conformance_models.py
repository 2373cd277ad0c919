"""Small seeded random-initialised transformers models of every family the conformance suite covers.

Each family is built offline from its own transformers config (a few layers, grouped-query
attention where the family has it, the switches that make the family what it is turned on
and sized so that they matter on ~100-token prompts: sliding windows of 8 tokens, soft-caps
that the logits reach, distinct rotary bases per layer type). Nothing here goes through
headspex except :func:`headspex.models.tiny_tokenizer` (a vocabulary) and, in the tests,
:func:`headspex.models.wrap_model` (the thing under test).

:data:`MODULES` names, per family, the plain transformers modules the tests hook for the
independent computation: the decoder layers, the attention and MLP modules, the attention
output projection (its input holds the query heads side by side) and the MLP output
projection (its input is the MLP's post-activation, one column per neuron).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

N_LAYERS = 3
D_MODEL = 32
N_HEADS = 4
N_KV_HEADS = 2
D_HEAD = 8
D_MLP = 48
WINDOW = 8  # sliding windows much shorter than the prompts (~100 tokens), so they matter
# Gemma-2 / Gemma-3 alternate local (sliding) and global layers: layer 1 is global, so a game
# whose players sit in layer 1 or 2, or one that runs every block, crosses both kinds.
GEMMA_LAYER_TYPES = ["sliding_attention", "full_attention", "sliding_attention"]


@dataclass(frozen=True)
class Modules:
    """Attribute paths of one family's plain transformers modules (see the module docstring)."""

    layers: str  # from the CausalLM model to the list of decoder layers
    attention: str  # from a decoder layer
    out_proj: str  # from the attention module
    mlp: str  # from a decoder layer
    down_proj: str  # from the MLP module


_LLAMA_LIKE = Modules("model.layers", "self_attn", "o_proj", "mlp", "down_proj")
MODULES: dict[str, Modules] = {
    "llama": _LLAMA_LIKE, "mistral": _LLAMA_LIKE, "qwen2": _LLAMA_LIKE, "qwen3": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE, "gemma3": _LLAMA_LIKE, "phi3": _LLAMA_LIKE, "olmo2": _LLAMA_LIKE,
    "gpt2": Modules("transformer.h", "attn", "c_proj", "mlp", "c_proj"),
    "gpt_neox": Modules("gpt_neox.layers", "attention", "dense", "mlp", "dense_4h_to_h"),
}
FAMILIES = tuple(MODULES)
# Families whose real tokenizers put BOS in front of every text by default.
BOS_FAMILIES = {"llama", "mistral", "gemma2", "gemma3", "phi3"}


def resolve(root: Any, path: str) -> Any:
    """``resolve(model, "model.layers")`` -> ``model.model.layers``."""
    for name in path.split("."):
        root = getattr(root, name)
    return root


def family_tokenizer(family: str) -> Any:
    """The tiny BPE vocabulary; families whose tokenizers add BOS by default get a copy that does."""
    from tokenizers import processors

    from headspex.models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    if family in BOS_FAMILIES:
        tokenizer = copy.deepcopy(tokenizer)
        bos = tokenizer.bos_token
        tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.bos_token_id)]
        )
    return tokenizer


def _config(family: str, vocab: int, tokenizer: Any) -> Any:
    import transformers as tf

    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    decoder = dict(vocab_size=vocab, hidden_size=D_MODEL, intermediate_size=D_MLP, num_hidden_layers=N_LAYERS,
                   num_attention_heads=N_HEADS, max_position_embeddings=512, tie_word_embeddings=False, **ids)
    gqa = dict(num_key_value_heads=N_KV_HEADS)
    gemma = dict(head_dim=D_HEAD, layer_types=GEMMA_LAYER_TYPES, sliding_window=WINDOW,
                 query_pre_attn_scalar=2 * D_HEAD, hidden_activation="gelu_pytorch_tanh", **gqa)
    builders: dict[str, Callable[[], Any]] = {
        "llama": lambda: tf.LlamaConfig(**decoder, **gqa),
        "mistral": lambda: tf.MistralConfig(**decoder, **gqa, sliding_window=WINDOW),
        "qwen2": lambda: tf.Qwen2Config(**decoder, **gqa),  # q/k/v biases
        "qwen3": lambda: tf.Qwen3Config(**decoder, **gqa, head_dim=D_HEAD),  # QK-norm
        "gemma2": lambda: tf.Gemma2Config(**decoder, **gemma, attn_logit_softcapping=2.0,
                                          final_logit_softcapping=5.0),
        "gemma3": lambda: tf.Gemma3TextConfig(
            **decoder, **gemma,
            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                             "full_attention": {"rope_type": "default", "rope_theta": 10_000.0}}),
        "phi3": lambda: tf.Phi3Config(**decoder, **gqa, sliding_window=WINDOW),  # fused qkv and gate/up
        "olmo2": lambda: tf.Olmo2Config(**decoder, **gqa),
        "gpt2": lambda: tf.GPT2Config(vocab_size=vocab, n_positions=512, n_embd=D_MODEL, n_layer=N_LAYERS,
                                      n_head=N_HEADS, n_inner=D_MLP, resid_pdrop=0.0, embd_pdrop=0.0,
                                      attn_pdrop=0.0, **ids),
        "gpt_neox": lambda: tf.GPTNeoXConfig(vocab_size=vocab, hidden_size=D_MODEL, num_hidden_layers=N_LAYERS,
                                             num_attention_heads=N_HEADS, intermediate_size=D_MLP,
                                             max_position_embeddings=512, rotary_pct=0.5,
                                             use_parallel_residual=True, **ids),
    }
    return builders[family]()


def build_family(family: str, seed: int = 0) -> tuple[Any, Any]:
    """A seeded random plain transformers CausalLM of ``family`` (eager attention) and its tokenizer."""
    from transformers import AutoModelForCausalLM

    tokenizer = family_tokenizer(family)
    config = _config(family, len(tokenizer), tokenizer)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    # The default init (std 0.02) gives near-uniform attention and tiny logit differences;
    # a larger scale gives non-trivial patterns, head effects and soft-caps that bite.
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.mul_(4.0)
    return model.float().eval(), tokenizer


@dataclass
class FamilyModels:
    """One family's plain transformers model and an independent copy wrapped as a bridge."""

    family: str
    plain: Any
    bridge: Any
    tokenizer: Any
    modules: Modules


_BUILT: dict[str, FamilyModels] = {}


def family_models(family: str) -> FamilyModels:
    """Built once per test session (the plain copy is never hooked by headspex)."""
    if family not in _BUILT:
        from headspex.models import wrap_model

        plain, tokenizer = build_family(family)
        bridge = wrap_model(copy.deepcopy(plain), tokenizer, f"tiny-{family}")
        _BUILT[family] = FamilyModels(family, plain, bridge, tokenizer, MODULES[family])
    return _BUILT[family]
