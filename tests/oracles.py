"""Independent oracles for game values: plain full forwards, one item and one mask at a time.

Nothing here calls headspex's scoring or block-running code: every value comes from the
model's own full forward (all positions, the whole vocabulary) under ``ablate(...)``, so a
test comparing the game (or a scorer) with these oracles can fail.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from headspex.ablation import ablate, encode_prompts


def naive_candidate_logits(game: Any, masks: np.ndarray) -> np.ndarray:
    """Full forward (all positions, full vocabulary) per (mask, question), hooks via ``ablate``.

    Returns ``float32[m, q, c]``: the logits of each question's candidate tokens at its last
    position, one unpadded forward per (mask, question).
    """
    prompts = game.scored
    out = np.zeros((len(masks), len(prompts), prompts.candidate_token_ids.shape[1]), dtype=np.float32)
    for i, mask in enumerate(masks):
        for q in range(len(prompts)):
            sources = None
            if game.mode == "resample":
                chunk = type("OneQuestion", (), {"unit_index": torch.tensor([q])})()
                sources = game._resample_sources(mask[None], chunk)
            with ablate(game.model, players=game.players, mask=mask[None], mode=game.mode,
                        reference=game.reference_activations, resample_sources=sources):
                if prompts.input_ids is not None:
                    ids = torch.tensor([prompts.input_ids[q]])
                    attention = torch.ones_like(ids)
                else:
                    ids, attention = encode_prompts(game.model, [prompts.prompts[q]])
                with torch.no_grad():
                    logits = game.model(ids, attention_mask=attention)[0, -1]
            out[i, q] = logits[prompts.candidate_token_ids[q]].numpy()
    return out


def _context_and_continuation(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of the context and of the continuation as it is tokenized after the context."""
    context_ids = list(tokenizer(context)["input_ids"])
    whole = list(tokenizer(context + continuation)["input_ids"])
    assert whole[: len(context_ids)] == context_ids and len(whole) > len(context_ids), (
        "oracle limitation: the context's tokens must be a prefix of context + continuation's"
    )
    return context_ids, whole[len(context_ids):]


def plain_cloze_logliks(model: Any, items: list[Any], reduction: str = "mean") -> np.ndarray:
    """Log-likelihood of every continuation of every cloze item: ``float64[q, c]``.

    One forward per item: its ``c`` sequences ``context + continuation``, right-padded; the
    token at position ``p`` is scored with ``log_softmax`` of the logits at ``p - 1``.
    ``reduction``: ``"sum"`` (nats) or ``"mean"`` (nats per continuation token).
    """
    tokenizer = model.tokenizer
    out = np.zeros((len(items), len(items[0].continuations)))
    for q, item in enumerate(items):
        pairs = [_context_and_continuation(tokenizer, item.context, text) for text in item.continuations]
        width = max(len(context) + len(continuation) for context, continuation in pairs)
        ids = torch.zeros(len(pairs), width, dtype=torch.long)
        attention = torch.zeros(len(pairs), width, dtype=torch.long)
        for row, (context, continuation) in enumerate(pairs):
            ids[row, : len(context) + len(continuation)] = torch.tensor(context + continuation)
            attention[row, : len(context) + len(continuation)] = 1
        with torch.no_grad():
            log_probs = torch.log_softmax(model(ids, attention_mask=attention).double(), dim=-1)
        for row, (context, continuation) in enumerate(pairs):
            predicting = log_probs[row, len(context) - 1 : len(context) + len(continuation) - 1]  # [len, vocab]
            token_log_probs = predicting.gather(-1, torch.tensor(continuation)[:, None])[:, 0]
            total = float(token_log_probs.sum())
            out[q, row] = total if reduction == "sum" else total / len(continuation)
    return out


def plain_cloze_game_values(game: Any, items: list[Any], masks: np.ndarray) -> np.ndarray:
    """The cloze game's values by :func:`plain_cloze_logliks`, one ``ablate(...)`` per mask:
    ``float64[m, q, c]`` mean log-prob per answer token (nats)."""
    out = []
    for mask in masks:
        with ablate(game.model, players=game.players, mask=mask[None], mode=game.mode,
                    reference=game.reference_activations):
            out.append(plain_cloze_logliks(game.model, items, reduction="mean"))
    return np.stack(out)


class PlantedGame:
    """A planted per-question game for run-directory tests. Two questions: 0.5 keep(0) -
    0.25 keep(1) keep(2) (+1 on the second). Counts calls and masks; with ``fail_after`` it
    raises KeyboardInterrupt on that call (a simulated kill). Subclasses plant other values."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.masks_seen = 0
        self.calls = 0
        self.fail_after = fail_after

    def question_values(self, masks: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        self.masks_seen += len(masks)
        return self.planted(masks)

    def planted(self, masks: np.ndarray) -> np.ndarray:
        """``float[m, q]`` per-question values of ``bool[m, n]`` masks."""
        m = masks.astype(float)
        value = 0.5 * m[:, 0] - 0.25 * m[:, 1] * m[:, 2]
        return np.stack([value, value + 1.0], axis=1)
