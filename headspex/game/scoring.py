"""Scoring the answer from a model's output: one letter scorer and one cloze scorer.

* **Letter tasks** score the logits of the candidate tokens (``" A"`` … ``" D"``) at the
  answer position: only the candidate rows of the unembedding are multiplied
  (:func:`candidate_logits`).
* **Cloze tasks** score each choice's text as a continuation of the context: the sum or mean,
  over the continuation's tokens, of the token's full-vocabulary log-probability.
  :func:`continuation_logliks` is the one home of that computation; it is differentiable
  (nothing inside detaches or disables gradients), so a gradient baseline can use it as is.
  :func:`continuation_logliks_from_hidden` feeds it from final hidden states, unembedding only
  the positions that predict continuation tokens, in memory-bounded slices (the game);
  :func:`cloze_choice_logliks` runs plain model forwards on :class:`~headspex.tasks.ClozeItem` s.

Token ``t`` at position ``p`` is predicted by the logits at ``p - 1``: a caller passes the
logits (or hidden states) at the predicting positions, aligned with the target tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from .errors import GameError

if TYPE_CHECKING:
    from ..tasks import ClozeItem

#: How per-token log-likelihoods of one continuation are combined.
Reduction = Literal["sum", "mean"]
_REDUCTIONS = ("sum", "mean")


def unembedding(model: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``W_U`` as ``[vocab, d_model]`` (rows gathered per token) and the bias ``[vocab]`` or
    ``None``, detached: the game scores under inference mode and never trains them."""
    linear = getattr(model.unembed, "original_component", None)
    if linear is None or not hasattr(linear, "weight"):
        raise GameError("Cannot find the unembedding of this model.")
    bias = getattr(linear, "bias", None)
    return linear.weight.detach(), (bias.detach() if bias is not None else None)


# ----------------------------------------------------------------------------- letter scoring


def candidate_logits(
    final_norm: Any,
    hidden: torch.Tensor,
    candidates: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """Logits of each row's candidate tokens at the last position (letter scoring).

    Args:
        final_norm: the model's final norm (``model.ln_final``).
        hidden: final hidden states before the norm, ``[rows, pos, d_model]``; prompts are
            left-padded, so the last position is every row's answer position.
        candidates: ``long[rows, c]`` candidate token ids of each row.
        weight, bias: the unembedding (:func:`unembedding`), ``[vocab, d_model]`` and ``[vocab]``.

    Returns:
        ``float[rows, c]`` logits: ``[rows, d_model] @ [d_model, c]`` per row instead of the
        full ``[rows, pos, vocab]``.
    """
    last = final_norm(hidden[:, -1:, :])[:, 0]  # [rows, d_model]
    rows_weight = weight[candidates]  # [rows, c, d_model]
    logits = torch.einsum("rd,rcd->rc", last.to(rows_weight.dtype), rows_weight)
    if bias is not None:
        logits = logits + bias[candidates]
    return logits


# ----------------------------------------------------------------------------- cloze scoring


def check_reduction(reduction: str) -> None:
    """Refuse a reduction other than ``"sum"`` or ``"mean"`` with a one-line error."""
    if reduction not in _REDUCTIONS:
        raise GameError(f"reduction must be 'sum' or 'mean'; got '{reduction}'")


def right_aligned_targets(continuations: Sequence[Sequence[int]]) -> torch.Tensor:
    """Continuation token ids right-aligned in ``long[rows, longest]``, ``-1`` before a shorter one.

    Matches left-padded sequences ``context + continuation``: the continuation fills the
    last ``len(continuation)`` positions of every row.
    """
    if not continuations or any(len(tokens) == 0 for tokens in continuations):
        raise GameError("every continuation needs at least one token")
    width = max(len(tokens) for tokens in continuations)
    targets = torch.full((len(continuations), width), -1)
    for row, tokens in enumerate(continuations):
        targets[row, width - len(tokens) :] = torch.tensor(list(tokens))
    return targets


def continuation_logliks(logits: torch.Tensor, targets: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Log-likelihood of each row's target tokens under the logits that predict them.

    The one cloze scorer's core; differentiable in ``logits``.

    Args:
        logits: ``float[rows, span, vocab]``, the logits at the positions that predict the
            targets (position ``p`` of a sequence predicts its token ``p + 1``).
        targets: ``long[rows, span]`` the predicted token ids; ``-1`` marks a position with
            no target (padding, context), which contributes nothing.
        reduction: ``"sum"`` (total log-likelihood, nats) or ``"mean"`` (nats per target token).

    Returns:
        ``float32[rows]`` on ``logits``' device: the sum or mean over each row's targets of
        ``log_softmax(logits)[target]`` (softmax over the full vocabulary, in fp32).
    """
    check_reduction(reduction)
    targets = targets.to(logits.device)
    valid = targets >= 0
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    token = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # [rows, span]
    total = torch.where(valid, token, torch.zeros_like(token)).sum(-1)
    return total if reduction == "sum" else total / valid.sum(-1)


def continuation_logliks_from_hidden(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    final_norm: Any,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    reduction: Reduction = "mean",
    rows_per_slice: int | None = None,
) -> torch.Tensor:
    """:func:`continuation_logliks` from final hidden states at the predicting positions.

    Args:
        hidden: ``[rows, span, d_model]`` final hidden states (before the final norm) at the
            positions aligned with ``targets``: only these positions are normed and unembedded.
        targets: ``long[rows, span]`` as in :func:`continuation_logliks` (``-1`` = no target).
        final_norm: the model's final norm (``model.ln_final``).
        weight, bias: the unembedding, ``[vocab, d_model]`` and ``[vocab]`` or ``None``.
        reduction: ``"sum"`` or ``"mean"``.
        rows_per_slice: rows unembedded at once (bounds the ``[slice, span, vocab]`` logits);
            ``None`` = all rows.

    Returns:
        ``float32[rows]`` on the CPU.
    """
    normed = final_norm(hidden)  # [rows, span, d]
    step = rows_per_slice or max(1, len(targets))
    scores = []
    for start in range(0, len(targets), step):
        rows = slice(start, start + step)
        logits = normed[rows] @ weight.T.to(normed.dtype)  # [slice, span, vocab]
        if bias is not None:
            logits = logits + bias.to(logits.dtype)
        scores.append(continuation_logliks(logits, targets[rows], reduction).cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")


def _right_padded_batch(
    requests: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, targets)`` for (context, continuation) pairs, right-padded.

    ``targets[row, p]`` is the token at ``p + 1`` where that token belongs to the continuation,
    else ``-1``: aligned with ``logits[:, :-1]``. Right padding keeps every real token at its
    true position, and under the causal mask no real token sees the trailing pads.
    """
    width = max(len(context) + len(continuation) for context, continuation in requests)
    input_ids = torch.full((len(requests), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(requests), width), dtype=torch.long)
    targets = torch.full((len(requests), width - 1), -1, dtype=torch.long)
    for row, (context, continuation) in enumerate(requests):
        sequence = context + continuation
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
        targets[row, len(context) - 1 : len(sequence) - 1] = torch.tensor(continuation)
    return input_ids, attention_mask, targets


def cloze_choice_logliks(
    model: Any,
    items: Sequence["ClozeItem"],
    batch_size: int = 8,
    reduction: Reduction = "sum",
    tokenizer: Any | None = None,
) -> torch.Tensor:
    """Log-likelihood of each continuation given its context, by plain model forwards.

    Runs ``model(input_ids, attention_mask=...)`` under ``torch.inference_mode`` and nothing
    else, so it works inside any hook / ablation context the model is in. Sequences are
    padded on the *right*: under a causal mask real tokens never see the trailing pads and
    keep their true positions, so results do not depend on the batch. Scores with
    :func:`continuation_logliks`.

    Args:
        model: a TransformerLens bridge (or any callable returning logits ``[b, pos, vocab]``
            or an object with ``.logits``).
        items: ``q`` cloze items with ``c`` continuations each.
        batch_size: sequences per forward pass.
        reduction: ``"sum"`` (total log-likelihood, nats) or ``"mean"`` (per continuation token).
        tokenizer: defaults to ``model.tokenizer``.

    Returns:
        ``float[q, c]`` log-likelihoods. ``question_values(result, correct)`` then gives the
        log-softmax over the choices at the correct one ("logprob") or accuracy (argmax).
    """
    # The tasks own how a continuation is tokenized in running text (as lm-eval does).
    from ..tasks.mmlu import continuation_token_ids

    check_reduction(reduction)
    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    if not items:
        return torch.zeros(0, 0)
    n_choices = len(items[0].continuations)
    if any(len(item.continuations) != n_choices for item in items):
        raise GameError("every cloze item must have the same number of continuations")
    requests = [continuation_token_ids(tokenizer, item.context, cont) for item in items for cont in item.continuations]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = _model_device(model)
    values = []
    with torch.inference_mode():
        for start in range(0, len(requests), batch_size):
            input_ids, attention_mask, targets = _right_padded_batch(requests[start : start + batch_size], pad_id)
            output = model(input_ids.to(device), attention_mask=attention_mask.to(device))
            logits = getattr(output, "logits", output)
            values.append(continuation_logliks(logits[:, :-1], targets, reduction).cpu())
    return torch.cat(values).view(len(items), n_choices)


__all__ = [
    "Reduction", "candidate_logits", "check_reduction", "cloze_choice_logliks", "continuation_logliks",
    "continuation_logliks_from_hidden", "right_aligned_targets", "unembedding",
]
