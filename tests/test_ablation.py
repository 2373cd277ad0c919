"""The hook manager against independent computations on plain transformers models.

The references never use TransformerLens hooks: they edit weights of a separately
built copy of the same seeded model, or patch its modules with torch hooks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from headspex.ablation import AblationError, ReferenceActivations, ablate, encode_prompts, parse_ablation_mode
from headspex.components import ComponentError, heads, neurons, Players
from headspex.models import tiny_hf_model
from headspex.types import AblationMode

PROMPTS = ["The following are questions about history. Answer: A", "Answer: B", "one two three four the a of"]
TOL = 2e-5  # fp32; the bridge and a plain forward differ only by op order


def plain_copy(model: Any) -> Any:
    """An independent transformers model with the same seeded weights as the tiny bridge."""
    arch = model.headspex_source.removeprefix("tiny-")
    hf, _ = tiny_hf_model(arch, seed=0, n_layers=model.cfg.n_layers)
    return hf


def plain_last_logits(hf: Any, tokenizer: Any, prompts: list[str]) -> torch.Tensor:
    """Last-position logits, one unpadded prompt at a time. float[b, vocab]."""
    rows = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
            rows.append(hf(ids).logits[0, -1])
    return torch.stack(rows)


def bridge_last_logits(model: Any, prompts: list[str]) -> torch.Tensor:
    ids, attention = encode_prompts(model, prompts)
    with torch.no_grad():
        return model(ids, attention_mask=attention)[:, -1]


def attn_modules(hf: Any) -> list[Any]:
    return [layer.self_attn for layer in hf.model.layers] if hasattr(hf, "model") else [b.attn for b in hf.transformer.h]


def o_proj(hf: Any, layer: int) -> Any:
    attn = attn_modules(hf)[layer]
    return attn.o_proj if hasattr(attn, "o_proj") else attn.c_proj


def zero_head_in_w_o(hf: Any, layer: int, head: int, d_head: int, scale_others: float = 1.0) -> None:
    """Zero head ``head``'s slice of W_O (Linear: columns; GPT-2 Conv1D: rows)."""
    proj = o_proj(hf, layer)
    with torch.no_grad():
        w = proj.weight
        sl = slice(head * d_head, (head + 1) * d_head)
        if hasattr(hf, "model"):  # nn.Linear weight [d_model, n_heads*d_head]
            w.mul_(scale_others)
            w[:, sl] = 0
        else:  # Conv1D weight [n_heads*d_head, d_model]
            w.mul_(scale_others)
            w[sl, :] = 0


def test_empty_ablation_is_clean_forward(tiny: Any) -> None:
    clean = bridge_last_logits(tiny, PROMPTS)
    with ablate(tiny, []):
        same = bridge_last_logits(tiny, PROMPTS)
    with ablate(tiny, players=heads(tiny, [0, 1]), mask=torch.ones(len(PROMPTS), 2 * tiny.cfg.n_heads, dtype=torch.bool)):
        all_kept = bridge_last_logits(tiny, PROMPTS)
    assert torch.equal(clean, same)
    assert torch.allclose(clean, all_kept, atol=0, rtol=0)


def test_bridge_matches_plain_model_with_left_padding(tiny: Any) -> None:
    expected = plain_last_logits(plain_copy(tiny), tiny.tokenizer, PROMPTS)
    assert torch.allclose(bridge_last_logits(tiny, PROMPTS), expected, atol=TOL)


@pytest.mark.parametrize("layer,head", [(0, 1), (2, 3)])
def test_zero_head_equals_zeroed_w_o(tiny: Any, layer: int, head: int) -> None:
    hf = plain_copy(tiny)
    zero_head_in_w_o(hf, layer, head, tiny.cfg.d_head)
    expected = plain_last_logits(hf, tiny.tokenizer, PROMPTS)
    with ablate(tiny, [f"L{layer}H{head}"]):
        got = bridge_last_logits(tiny, PROMPTS)
    assert torch.allclose(got, expected, atol=TOL)
    assert not torch.allclose(got, bridge_last_logits(tiny, PROMPTS), atol=1e-3)  # the head matters


def test_zero_rescaled_equals_scaled_w_o(tiny_llama: Any) -> None:
    n_heads = tiny_llama.cfg.n_heads
    hf = plain_copy(tiny_llama)
    zero_head_in_w_o(hf, 1, 2, tiny_llama.cfg.d_head, scale_others=n_heads / (n_heads - 1))
    expected = plain_last_logits(hf, tiny_llama.tokenizer, PROMPTS)
    with ablate(tiny_llama, ["L1H2"], mode="zero_rescaled"):
        got = bridge_last_logits(tiny_llama, PROMPTS)
    assert torch.allclose(got, expected, atol=TOL)
    with ablate(tiny_llama, ["L1H2"], mode=AblationMode.ZERO_RESCALED) as ablator:  # the enum member works too
        assert torch.equal(bridge_last_logits(tiny_llama, PROMPTS), got)
    assert ablator.mode is AblationMode.ZERO_RESCALED


def test_zero_neuron_equals_zeroed_w_out(tiny: Any) -> None:
    hf = plain_copy(tiny)
    with torch.no_grad():
        for index in (3, 17):
            if hasattr(hf, "model"):
                hf.model.layers[1].mlp.down_proj.weight[:, index] = 0
            else:
                hf.transformer.h[1].mlp.c_proj.weight[index, :] = 0
    expected = plain_last_logits(hf, tiny.tokenizer, PROMPTS)
    with ablate(tiny, ["L1N3", "L1N17"]):
        got = bridge_last_logits(tiny, PROMPTS)
    assert torch.allclose(got, expected, atol=TOL)


def test_zero_block_is_identity_layer(tiny: Any) -> None:
    hf = plain_copy(tiny)
    layers = hf.model.layers if hasattr(hf, "model") else hf.transformer.h

    def identity(module: Any, args: Any, kwargs: Any, output: Any) -> Any:
        hidden = args[0] if args else kwargs["hidden_states"]
        return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden

    handle = layers[1].register_forward_hook(identity, with_kwargs=True)
    expected = plain_last_logits(hf, tiny.tokenizer, PROMPTS)
    handle.remove()
    with ablate(tiny, ["L1"]):
        got = bridge_last_logits(tiny, PROMPTS)
    assert torch.allclose(got, expected, atol=TOL)
    with ablate(tiny, ["L1.attn", "L1.mlp"]):
        assert torch.allclose(bridge_last_logits(tiny, PROMPTS), expected, atol=TOL)


def test_mean_ablation_equals_hand_computed_mean(tiny: Any) -> None:
    """Mean over every non-padding token of the reference prompts, substituted by hand."""
    reference_prompts = ["Answer: C the a of", "history physics law", "0 1 2 3 4 5 6 7"]
    hf = plain_copy(tiny)
    proj = o_proj(hf, 1)
    d_head = tiny.cfg.d_head
    captured: list[torch.Tensor] = []
    grab = proj.register_forward_pre_hook(lambda m, args: captured.append(args[0][0].detach().clone()))
    with torch.no_grad():
        for prompt in reference_prompts:  # unpadded, one at a time: every token counts
            hf(tiny.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids)
    grab.remove()
    all_tokens = torch.cat(captured)  # [total_tokens, n_heads*d_head]
    head_mean = all_tokens[:, 2 * d_head : 3 * d_head].mean(0)

    def substitute(module: Any, args: Any) -> Any:
        z = args[0].clone()
        z[..., 2 * d_head : 3 * d_head] = head_mean
        return (z,)

    patch = proj.register_forward_pre_hook(substitute)
    expected = plain_last_logits(hf, tiny.tokenizer, PROMPTS)
    patch.remove()
    reference = ReferenceActivations.compute(tiny, reference_prompts, ["L1H2"])
    with ablate(tiny, ["L1H2"], mode="mean", reference=reference):
        got = bridge_last_logits(tiny, PROMPTS)
    assert torch.allclose(got, expected, atol=TOL)


def test_per_row_masks_equal_one_at_a_time(tiny: Any) -> None:
    """One forward with a different mask per row == each ablation run separately."""
    players = Players(["L0H0", "L0H3", "L1H1", "L2H2", "L1.mlp", "L2N5", "L0"], tiny)
    rng = np.random.default_rng(0)
    masks = rng.random((6, len(players))) < 0.5
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(masks))]
    for mode in ("zero", "zero_rescaled", "mean", "resample"):
        reference = ReferenceActivations.compute(tiny, ["history of law", "Answer: D", "the a"], players)
        sources = rng.integers(0, 3, size=len(masks))
        with ablate(tiny, players=players, mask=masks, mode=mode, reference=reference, resample_sources=sources):
            batched = bridge_last_logits(tiny, prompts)
        for row in range(len(masks)):
            with ablate(
                tiny, players=players, mask=masks[row : row + 1], mode=mode, reference=reference,
                resample_sources=sources[row : row + 1],
            ):
                single = bridge_last_logits(tiny, [prompts[row]])
            assert torch.allclose(batched[row], single[0], atol=1e-4), (mode, row)


def test_resample_uses_source_prompt_activations(tiny_llama: Any) -> None:
    """Resampling a whole layer from a prompt equal to the input leaves it unchanged."""
    prompt = PROMPTS[1]
    reference = ReferenceActivations.compute(tiny_llama, [prompt, "other words here entirely"], ["L1.attn"])
    clean = bridge_last_logits(tiny_llama, [prompt])
    with ablate(tiny_llama, ["L1.attn"], mode="resample", reference=reference, resample_sources=[0]):
        same = bridge_last_logits(tiny_llama, [prompt])
    with ablate(tiny_llama, ["L1.attn"], mode="resample", reference=reference, resample_sources=[1]):
        other = bridge_last_logits(tiny_llama, [prompt])
    assert torch.allclose(clean, same, atol=1e-5)
    assert not torch.allclose(clean, other, atol=1e-3)


def test_hooks_removed_after_context_and_exception(tiny: Any) -> None:
    clean = bridge_last_logits(tiny, PROMPTS)
    with ablate(tiny, ["L0H0", "L1.mlp"]):
        pass
    assert torch.equal(bridge_last_logits(tiny, PROMPTS), clean)
    with pytest.raises(RuntimeError, match="boom"):
        with ablate(tiny, ["L0H0", "L1.mlp", "L2"]):
            raise RuntimeError("boom")
    assert torch.equal(bridge_last_logits(tiny, PROMPTS), clean)
    assert all(len(hp.fwd_hooks) == 0 for hp in tiny.hook_dict.values())


def test_bad_inputs_give_clear_errors(tiny_llama: Any) -> None:
    n_layers = tiny_llama.cfg.n_layers
    with pytest.raises(ComponentError, match=rf"L40H3.*{n_layers}-layer model"):
        with ablate(tiny_llama, ["L40H3"]):
            pass
    with pytest.raises(ComponentError, match="has 4 query heads"):
        heads(tiny_llama, [0]) and Players(["L0H9"], tiny_llama)
    with pytest.raises(ComponentError, match="Cannot parse"):
        Players(["layer3head5"])
    players = heads(tiny_llama, [0])
    with pytest.raises(AblationError, match=r"Wrong mask shape \(2, 3\).*\[batch, 4\]"):
        with ablate(tiny_llama, players=players, mask=torch.ones(2, 3, dtype=torch.bool)):
            pass
    with pytest.raises(AblationError, match="must be boolean"):
        with ablate(tiny_llama, players=players, mask=torch.ones(2, 4)):
            pass
    with pytest.raises(AblationError, match="needs reference activations"):
        with ablate(tiny_llama, ["L0H1"], mode="mean"):
            pass
    with pytest.raises(AblationError, match="Unknown ablation mode"):
        with ablate(tiny_llama, ["L0H1"], mode="gaussian"):
            pass
    with pytest.raises(AblationError, match="zero, zero_rescaled, mean, resample"):  # names the choices
        parse_ablation_mode("Zero")
    with pytest.raises(AblationError, match="mask has 2 rows but the batch has 3"):
        with ablate(tiny_llama, players=players, mask=torch.ones(2, 4, dtype=torch.bool)):
            bridge_last_logits(tiny_llama, PROMPTS)
    assert all(len(hp.fwd_hooks) == 0 for hp in tiny_llama.hook_dict.values())


def test_neuron_players(tiny_llama: Any) -> None:
    players = neurons(tiny_llama, 1, range(8))
    assert players.names[:2] == ["L1N0", "L1N1"] and len(players) == 8
    assert len(heads(tiny_llama, [2])) == tiny_llama.cfg.n_heads
