"""Conformance of headspex on every decoder family it accepts, against independent computations.

For each family of :mod:`conftest` (Llama, Mistral, Qwen2, Qwen3, Gemma-2, Gemma-3, Phi-3,
OLMo-2, GPT-2, GPT-NeoX), a seeded random model checks that

* the bridge's logits equal plain transformers' (padded batch vs one unpadded forward each);
* prompts are tokenised exactly as the model's tokenizer does by default (BOS where it adds one);
* per-head, per-neuron and per-layer ablation equal hooks written here on the plain model
  (a pre-hook on the attention output projection zeroing query heads, a pre-hook on the MLP
  output projection zeroing neurons, forward hooks zeroing whole sub-layer outputs);
* the AblationGame equals a naive loop (one hooked full forward per mask and sequence, token
  ids from the tokenizer) for letter and cloze scoring, every ablation mode, with the upstream
  cache and fused attention each on and off.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conformance_models import BOS_FAMILIES, D_HEAD, FAMILIES, N_HEADS, FamilyModels, family_models, resolve
from headspex.ablation import ablate, encode_prompts
from headspex.components import Head, LayerPart, Neuron, Players, parse_component
from headspex.game import AblationGame, GameError, blocks
from headspex.tasks import MMLUTask
from fixture_paths import MMLU_FIXTURES

FIXTURES = MMLU_FIXTURES / "cais_jsonl"
MODES = ("zero", "zero_rescaled", "mean", "resample")
# fp32, 3 layers: the paths differ only in summation order and padding (measured ≤ 2e-6).
TOL = 1e-4
PROMPTS = [
    "The following are multiple choice questions (with answers) about law.\n\nQuestion: which of these "
    "is right? A. one B. two C. three D. four\nAnswer:",
    "Answer: A",
    "the a of and to in is that 0 1 2 3",
]
GAME_PLAYERS = ["L1H0", "L1H3", "L1N5", "L2H1", "L2.mlp"]


# ----------------------------------------------------------------------------- helpers


def _logits(model: Any, ids: torch.Tensor, attention: torch.Tensor | None = None) -> torch.Tensor:
    with torch.inference_mode():
        out = model(ids, attention_mask=attention) if attention is not None else model(ids)
    return out.logits if hasattr(out, "logits") else out


@contextmanager
def independent_ablation(fm: FamilyModels, components: Sequence[str], rescale: bool = False) -> Iterator[None]:
    """Zero-ablate ``components`` on the plain model with torch hooks written from its module layout."""
    by_layer: dict[int, list[Any]] = {}
    for text in components:
        component = parse_component(text)
        by_layer.setdefault(component.layer, []).append(component)
    layers = resolve(fm.plain, fm.modules.layers)
    with ExitStack() as stack:
        for layer, parts in by_layer.items():
            block = layers[layer]
            attention = resolve(block, fm.modules.attention)
            mlp = resolve(block, fm.modules.mlp)
            ablated_heads = [p.head for p in parts if isinstance(p, Head)]
            neurons = [p.index for p in parts if isinstance(p, Neuron)]
            whole = {p.part for p in parts if isinstance(p, LayerPart)}
            if ablated_heads:
                handle = resolve(attention, fm.modules.out_proj).register_forward_pre_hook(
                    _zero_heads(ablated_heads, rescale))
                stack.callback(handle.remove)
            if neurons:
                handle = resolve(mlp, fm.modules.down_proj).register_forward_pre_hook(_zero_columns(neurons))
                stack.callback(handle.remove)
            if whole & {"attn", "block"}:
                stack.callback(attention.register_forward_hook(_zero_output).remove)
            if whole & {"mlp", "block"}:
                stack.callback(mlp.register_forward_hook(_zero_output).remove)
        yield


def _zero_heads(ablated: list[int], rescale: bool) -> Any:
    def pre_hook(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        heads = args[0].unflatten(-1, (N_HEADS, D_HEAD)).clone()  # [b, pos, heads, d_head]
        heads[..., ablated, :] = 0.0
        if rescale:  # the ProxySPEX paper's ablation: kept heads scaled by n / n_kept
            heads = heads * (N_HEADS / (N_HEADS - len(ablated)))
        return (heads.flatten(-2), *args[1:])

    return pre_hook


def _zero_columns(columns: list[int]) -> Any:
    def pre_hook(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        post = args[0].clone()
        post[..., columns] = 0.0
        return (post, *args[1:])

    return pre_hook


def _zero_output(module: Any, args: Any, output: Any) -> Any:
    if isinstance(output, tuple):
        return (torch.zeros_like(output[0]), *output[1:])
    return torch.zeros_like(output)


def fixture_task(fm: FamilyModels, scoring: str) -> MMLUTask:
    return MMLUTask(fm.tokenizer, "high school us history", source=str(FIXTURES), n_reference=3,
                    n_attribution=3, scoring=scoring)


def naive_values(game: AblationGame, masks: np.ndarray) -> np.ndarray:
    """One hooked full forward per (mask, sequence), ids straight from the tokenizer: ``[m, q, c]``."""
    tokenizer = game.model.tokenizer
    prompts = game.scored
    n_choices = prompts.candidate_token_ids.shape[1]
    out = np.zeros((len(masks), len(prompts), n_choices), dtype=np.float32)
    for i, mask in enumerate(masks):
        for q in range(len(prompts)):
            context = list(tokenizer(prompts.prompts[q])["input_ids"])
            unit = type("OneUnit", (), {"unit_index": torch.tensor([q * (n_choices if game.cloze else 1)])})()
            sources = game._resample_sources(mask[None], unit) if game.mode == "resample" else None
            with ablate(game.model, players=game.players, mask=mask[None], mode=game.mode,
                        reference=game.reference_activations, resample_sources=sources):
                if not game.cloze:
                    logits = _logits(game.model, torch.tensor([context]))[0, -1]
                    out[i, q] = logits[prompts.candidate_token_ids[q]].numpy()
                    continue
                for choice, answer in enumerate(prompts.continuation_ids[q]):
                    # As lm-eval: the last answer token is predicted, never read, so it is not fed
                    # (resample ablation aligns sources from the end of what is fed).
                    ids = torch.tensor([context + list(answer)[:-1]])
                    log_probs = torch.log_softmax(_logits(game.model, ids)[0].float(), -1)
                    positions = torch.arange(len(context) - 1, ids.shape[1])
                    out[i, q, choice] = log_probs[positions, torch.tensor(answer)].mean().item()
    return out


# ----------------------------------------------------------------------------- the suite


@pytest.mark.parametrize("name", FAMILIES)
def test_bridge_logits_equal_transformers(name: str) -> None:
    fm = family_models(name)
    ids, attention = encode_prompts(fm.bridge, PROMPTS)
    ours = _logits(fm.bridge, ids, attention)
    for row, prompt in enumerate(PROMPTS):
        single = fm.tokenizer(prompt, return_tensors="pt").input_ids
        theirs = _logits(fm.plain, single)[0]
        got = ours[row, -single.shape[1]:]
        assert torch.allclose(got, theirs, atol=TOL), (name, (got - theirs).abs().max())


@pytest.mark.parametrize("name", FAMILIES)
def test_prompts_are_tokenised_as_the_tokenizer_does(name: str) -> None:
    fm = family_models(name)
    ids, attention = encode_prompts(fm.bridge, PROMPTS)
    for row, prompt in enumerate(PROMPTS):
        expected = fm.tokenizer(prompt)["input_ids"]
        assert ids[row][attention[row].bool()].tolist() == expected
        assert (expected[0] == fm.tokenizer.bos_token_id) == (name in BOS_FAMILIES)
    cloze = fixture_task(fm, "cloze").prompt_set("attribution")
    for context, context_ids in zip(cloze.prompts, cloze.input_ids):
        assert context_ids == fm.tokenizer(context)["input_ids"]


ABLATIONS = {
    "heads": (["L0H1", "L1H0", "L1H3", "L2H2"], "zero"),
    "heads_rescaled": (["L1H0", "L1H3", "L2H2"], "zero_rescaled"),
    "neurons": (["L0N3", "L1N5", "L1N40", "L2N7"], "zero"),
    "layers": (["L0.attn", "L1.mlp", "L2"], "zero"),
}


@pytest.mark.parametrize("kind", ABLATIONS)
@pytest.mark.parametrize("name", FAMILIES)
def test_ablation_equals_independent_hooks(name: str, kind: str) -> None:
    fm = family_models(name)
    components, mode = ABLATIONS[kind]
    ids, attention = encode_prompts(fm.bridge, PROMPTS[:2])
    with ablate(fm.bridge, components, mode=mode):
        ours = _logits(fm.bridge, ids, attention)
    for row, prompt in enumerate(PROMPTS[:2]):
        single = fm.tokenizer(prompt, return_tensors="pt").input_ids
        with independent_ablation(fm, components, rescale=mode == "zero_rescaled"):
            theirs = _logits(fm.plain, single)[0]
        got = ours[row, -single.shape[1]:]
        assert torch.allclose(got, theirs, atol=TOL), (name, kind, (got - theirs).abs().max())
        assert not torch.allclose(got, _logits(fm.plain, single)[0], atol=1e-3)  # the ablation acted


# Each scoring runs every mode once and every (upstream cache, fused attention) setting once;
# the two scorings pair them differently, so each mode also meets two settings per family.
SETTINGS = list(itertools.product((True, False), (True, False)))
GAME_CASES = [("letter", mode, *SETTINGS[i]) for i, mode in enumerate(MODES)] + [
    ("cloze", mode, *SETTINGS[3 - i]) for i, mode in enumerate(MODES)]


@pytest.mark.parametrize("scoring", ["letter", "cloze"])
@pytest.mark.parametrize("name", FAMILIES)
def test_game_equals_naive_loop(name: str, scoring: str) -> None:
    """Every mode; upstream cache and fused attention on and off: values equal the naive loop."""
    fm = family_models(name)
    task = fixture_task(fm, scoring)
    players = Players(GAME_PLAYERS, fm.bridge)
    masks = np.array([[1, 1, 1, 1, 1], [0, 1, 0, 1, 1], [1, 0, 1, 0, 0]], dtype=bool)
    for case_scoring, mode, upstream, fused in GAME_CASES:
        if case_scoring != scoring:
            continue
        # A tiny memory budget: several micro-batches, so chunking and padding are exercised.
        game = AblationGame(fm.bridge, task, players, mode=mode, progress=False, n_questions=2,
                            upstream_cache=upstream, fused_attention=fused, memory_budget_mb=0.05)
        assert game.first_layer == (1 if upstream else 0)
        got = game.candidate_logits(masks)
        difference = np.abs(got - naive_values(game, masks)).max()
        assert difference <= TOL, (name, scoring, mode, upstream, fused, difference)


# ----------------------------------------------------------------------------- refusals


def _reuse_first_block_inputs(capture: Any) -> Any:
    """A broken capture: every block gets the first block's rotary embeddings and mask (the old bug)."""

    def broken(*args: Any) -> Any:
        hidden, layer_inputs = capture(*args)
        return hidden, tuple(layer_inputs[0] for _ in layer_inputs)

    return broken


def _shifted_hidden(capture: Any) -> Any:
    """A broken capture: the residual stream entering block L is off by a constant."""

    def broken(*args: Any) -> Any:
        hidden, layer_inputs = capture(*args)
        return hidden + 0.5, layer_inputs

    return broken


@pytest.mark.parametrize("name, breakage", [("gemma3", _reuse_first_block_inputs), ("llama", _shifted_hidden)])
def test_self_check_refuses_a_broken_block_capture(name: str, breakage: Any, monkeypatch: Any) -> None:
    fm = family_models(name)
    task = fixture_task(fm, "letter")
    game = AblationGame(fm.bridge, task, Players(GAME_PLAYERS, fm.bridge), progress=False, n_questions=2,
                        upstream_cache=False)
    monkeypatch.setattr(blocks, "capture_block_inputs", breakage(blocks.capture_block_inputs))
    with pytest.raises(GameError, match=rf"Self-check failed for tiny-{name}: .* differ .* by [0-9.e-]+"):
        game(np.ones((1, game.n_players), dtype=bool))
    assert game.n_row_evaluations == 0  # nothing was returned or cached


def test_tokenizer_that_appends_eos_is_refused() -> None:
    from tokenizers import processors

    from headspex.ablation import encode_prompts
    from headspex.tasks.base import TaskError

    fm = family_models("llama")
    tokenizer = fm.tokenizer.__class__(tokenizer_object=fm.tokenizer.backend_tokenizer.__class__.from_str(
        fm.tokenizer.backend_tokenizer.to_str()), bos_token=fm.tokenizer.bos_token, eos_token=fm.tokenizer.eos_token)
    eos = tokenizer.eos_token
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", special_tokens=[(eos, tokenizer.eos_token_id)])
    model = type("WithTokenizer", (), {"tokenizer": tokenizer, "parameters": fm.bridge.parameters})()
    with pytest.raises(TaskError, match="adds special tokens after every text"):
        encode_prompts(model, ["Answer:"])


def test_soft_capped_attention_is_never_fused() -> None:
    """Gemma-2's tanh soft-cap of the attention scores has no SDPA form: its layers keep the
    bridge's path (before, the game crashed inside SDPA); sliding windows reach SDPA as masks."""
    from headspex.game.fused_attention import fusable_layers

    assert fusable_layers(family_models("gemma2").bridge, range(3)) == []
    assert fusable_layers(family_models("gemma3").bridge, range(3)) == [0, 1, 2]
    assert fusable_layers(family_models("mistral").bridge, range(3)) == [0, 1, 2]
