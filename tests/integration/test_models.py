"""Model loading (offline sources) and component naming."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from headspex.ablation import encode_prompts
from headspex.components import ComponentError, Head, LayerPart, Neuron, Players, heads, parse_component
from headspex.models import ModelLoadError, find_smollm2_gguf, load_model, tiny_model

# Eager attention (the bridge) vs transformers' default SDPA kernel reorder float
# sums: measured max |Δlogit| ≈ 3e-5 on logits of magnitude ~20 (fp32). 1e-3 leaves
# room for other BLAS builds while still catching any real wiring error (≥ 1e-1).
SMOLLM2_LOGIT_TOL = 1e-3

PROMPTS = [
    "The capital of France is",
    "The following are multiple choice questions (with answers) about high school us history.\n\n"
    "Who was the first president of the United States?\nA. Abraham Lincoln\nB. George Washington\n"
    "C. John Adams\nD. Thomas Jefferson\nAnswer:",
]


@pytest.mark.smollm2
def test_smollm2_logits_match_plain_transformers(smollm2: Any) -> None:
    from transformers import AutoModelForCausalLM

    path = find_smollm2_gguf()
    plain = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    ids, attention = encode_prompts(smollm2, PROMPTS)
    with torch.no_grad():
        ours = smollm2(ids, attention_mask=attention)[:, -1]
        for row, prompt in enumerate(PROMPTS):
            single = smollm2.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
            theirs = plain(single).logits[0, -1]
            assert torch.allclose(ours[row], theirs, atol=SMOLLM2_LOGIT_TOL), (ours[row] - theirs).abs().max()
            assert ours[row].argmax() == theirs.argmax()


@pytest.mark.smollm2
def test_smollm2_shape_and_players(smollm2: Any) -> None:
    cfg = smollm2.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (30, 9, 64, 1536)
    assert cfg.n_key_value_heads == 3
    layer20 = heads(smollm2, layers=[20])
    assert layer20.names == [f"L20H{h}" for h in range(9)]
    with pytest.raises(ComponentError, match="L40H3.*30-layer model"):
        Players(["L40H3"], smollm2)


def test_parse_and_print_round_trip() -> None:
    cases = {"L3H5": Head(3, 5), "L3.attn": LayerPart(3, "attn"), "L3.mlp": LayerPart(3, "mlp"),
             "L3": LayerPart(3, "block"), "L3N512": Neuron(3, 512)}
    for text, component in cases.items():
        assert parse_component(text) == component
        assert str(component) == text
    assert parse_component(" l3h5 ") == Head(3, 5)


def test_players_order_names_and_errors(tiny_llama: Any) -> None:
    players = Players(["L2H1", "L0H3", "L1.mlp"], tiny_llama)
    assert players.names == ["L2H1", "L0H3", "L1.mlp"]  # caller's order is kept
    assert players.index("L0H3") == 1 and players.first_layer == 0 and players.layers == [2, 0, 1]
    with pytest.raises(ComponentError, match="listed twice"):
        Players(["L0H1", "l0h1"])
    with pytest.raises(ComponentError, match="neurons"):
        Players(["L0N9999"], tiny_llama)
    assert len(heads(tiny_llama)) == tiny_llama.cfg.n_layers * tiny_llama.cfg.n_heads


def test_tiny_models_are_seeded_and_gqa() -> None:
    a, b = tiny_model("llama", seed=1), tiny_model("llama", seed=1)
    c = tiny_model("llama", seed=2)
    ids, attention = encode_prompts(a, ["Answer: A"])
    with torch.no_grad():
        assert torch.equal(a(ids, attention_mask=attention), b(ids, attention_mask=attention))
        assert not torch.allclose(a(ids, attention_mask=attention), c(ids, attention_mask=attention))
    assert a.cfg.n_key_value_heads == 2 and a.cfg.n_heads == 4
    for letter in "ABCD":
        assert len(a.tokenizer.encode(" " + letter, add_special_tokens=False)) == 1


def test_load_model_errors_are_clear(tmp_path: Any, monkeypatch: Any) -> None:
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(tmp_path / "missing.gguf")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="Load from a local path"):
        load_model("some-org/some-model-that-is-not-cached")
    assert load_model("tiny-gpt2").cfg.n_layers == 2


def test_local_hf_folder_round_trip(tmp_path: Any) -> None:
    from headspex.models import tiny_hf_model

    hf, tokenizer = tiny_hf_model("llama", seed=3)
    hf.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    ids, attention = encode_prompts(loaded, ["Answer: B"])
    with torch.no_grad():
        assert torch.allclose(loaded(ids, attention_mask=attention)[0, -1], hf(ids).logits[0, -1], atol=1e-5)
