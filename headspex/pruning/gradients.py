"""The gradient-of-mask baseline (Michel et al. 2019): head importance from mask gradients.

Needs torch and a TransformerLens model; the strategy registry imports it lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..ablation import encode_prompts, left_padded_ids
from ..components import Head, Players
from ..game.scoring import continuation_logliks, right_aligned_targets
from ..hooks import hook_name
from .errors import PruningError


def mask_gradient_importance(
    model: Any,
    prompt_set: Any,
    players: Players | Sequence[str],
    *,
    batch_size: int = 8,
    progress: bool = True,
) -> np.ndarray:
    """Michel et al. (2019) head importance ``E_x |∂L(x)/∂ξ_h|`` at ``ξ = 1``.

    A gate ``ξ_h`` multiplies each head's ``blocks.l.attn.hook_z`` slice; the loss of a
    question is ``−log p(correct letter)`` with the softmax restricted to its candidates
    (nats). For a cloze prompt set it is ``−log softmax(choice scores)[correct]``, a choice's
    score being the mean log-prob of its answer tokens, as the cloze game scores it. Each
    question has its own gate copy (shared by its choices), so the absolute value is taken
    per question before averaging.

    Args:
        model: TransformerBridge.
        prompt_set: a :class:`~headspex.tasks.base.PromptSet` (attribution questions).
        players: heads only.
        batch_size: sequences per forward/backward (questions; cloze: question × choice).

    Returns:
        ``float64[n_players]``: mean absolute gradient (nats per unit gate).
    """
    from tqdm.auto import tqdm

    players = players if isinstance(players, Players) else Players(players, model)
    if not all(isinstance(p, Head) for p in players):
        raise PruningError("mask_gradient_importance gates attention heads only; give Head players")
    layers = sorted({p.layer for p in players})
    n_heads = int(model.cfg.n_heads)
    totals = np.zeros((len(layers), n_heads))
    n_questions = len(prompt_set)
    if n_questions == 0:
        raise PruningError("mask_gradient_importance needs at least one question")
    rows_per_question = int(prompt_set.candidate_token_ids.shape[1]) if prompt_set.is_cloze else 1
    step = max(1, batch_size // rows_per_question)  # batch_size sequences per forward
    for start in tqdm(range(0, n_questions, step), desc="mask gradients", disable=not progress):
        stop = min(start + step, n_questions)
        gates = torch.ones(len(layers), stop - start, n_heads, requires_grad=True)

        def gate_hook(slot: int) -> Callable[[torch.Tensor, Any], torch.Tensor]:
            def hook(z: torch.Tensor, hook: Any) -> torch.Tensor:  # z: [b, pos, heads, d_head]
                row_gates = gates[slot].to(z.device, z.dtype).repeat_interleave(rows_per_question, dim=0)
                return z * row_gates[:, None, :, None]
            return hook

        hooks = [(hook_name(layer, "z"), gate_hook(slot)) for slot, layer in enumerate(layers)]
        correct = prompt_set.correct_index[start:stop]
        with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
            if prompt_set.is_cloze:
                scores = _cloze_choice_scores(model, prompt_set, range(start, stop))  # [b, c]
                log_probs = torch.log_softmax(scores, dim=-1)
            else:
                ids, attention = encode_prompts(model, prompt_set.prompts[start:stop])
                logits = model(ids, attention_mask=attention)[:, -1]  # [b, vocab]
                candidates = prompt_set.candidate_token_ids[start:stop].to(logits.device)
                log_probs = torch.log_softmax(logits.float().gather(-1, candidates), dim=-1)
            loss = -log_probs.gather(-1, correct.to(log_probs.device)[:, None]).sum()
            (grad,) = torch.autograd.grad(loss, gates)
        totals += grad.abs().sum(dim=1).detach().cpu().double().numpy()
    per_layer = totals / n_questions
    slot_of = {layer: slot for slot, layer in enumerate(layers)}
    return np.array([per_layer[slot_of[p.layer], p.head] for p in players])


def _cloze_choice_scores(model: Any, prompt_set: Any, questions: Sequence[int]) -> torch.Tensor:
    """Differentiable cloze scores ``float[len(questions), c]``: mean answer-token log-prob.

    Rows are (question, choice) sequences, question-major, left-padded: context + answer; the
    answer's tokens are scored by the one cloze scorer core (:func:`continuation_logliks`).
    """
    sequences, continuations = [], []
    for q in questions:
        for continuation in prompt_set.continuation_ids[q]:
            sequences.append(list(prompt_set.input_ids[q]) + list(continuation))
            continuations.append(list(continuation))
    ids, attention = encode_prompts(model, left_padded_ids(sequences))
    targets = right_aligned_targets(continuations)  # [rows, span], -1 before a shorter answer
    span = targets.shape[1]
    # Position p predicts token p + 1: the answer's last `span` tokens are predicted by the
    # `span` positions before the last one.
    logits = model(ids, attention_mask=attention)[:, -span - 1 : -1]
    return continuation_logliks(logits, targets, reduction="mean").view(len(questions), -1)
