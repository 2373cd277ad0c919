"""The block runner: capture what block L receives once per question, re-run blocks L… per row.

Every player of a game sits at layer ≥ L, so nothing before block L depends on the mask.
The runner runs the model's clean forward until block L is called (a forward pre-hook
captures its positional and keyword inputs: residual stream, attention mask, rotary
embeddings, position ids), stops it there, and later calls blocks L… itself with those
inputs repeated once per mask (rows are mask-major: mask 0's sequences, then mask 1's…).

Shapes: a chunk holds ``qc`` sequences (questions, or (question, choice) pairs for cloze
scoring) of one padded length ``pos``; its captured hidden state is ``[qc, pos, d_model]``.
Tensors in the captured kwargs whose first dimension is ``qc`` are per-sequence and are
repeated with the rows; others (``position_ids [1, pos]``, shared rotary tables) pass as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .errors import GameError


class _StopAfterCapture(Exception):
    """Raised inside the clean forward once block L's inputs are captured."""


@dataclass
class QuestionChunk:
    """Sequences that share one padded length, with the captured inputs of the first run block.

    A sequence is a question (letter tasks) or a (question, choice) pair (cloze tasks).
    """

    unit_index: torch.Tensor  # long[qc] positions in the game's sequence list
    block_args: tuple[Any, ...]  # positional args of block L; args[0] = hidden [qc, pos, d]
    block_kwargs: dict[str, Any]  # keyword args of block L (attention mask, rotary, ...)

    @property
    def size(self) -> int:
        """``qc``: the number of sequences in the chunk."""
        return int(self.unit_index.shape[0])

    @property
    def positions(self) -> int:
        """``pos``: the padded length of the chunk's sequences."""
        return int(self.block_args[0].shape[1])

    def first_sequence(self) -> "QuestionChunk":
        """The chunk cut down to its first sequence (same block inputs, one row)."""
        return QuestionChunk(
            self.unit_index[:1], first_row(self.block_args, self.size), first_row(self.block_kwargs, self.size)
        )


def map_per_row(value: Any, n_rows: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor in ``value`` (nested tuples/lists/dicts) whose first dim is
    ``n_rows``; tensors shared by all rows (e.g. ``position_ids [1, pos]``) pass unchanged."""
    if isinstance(value, torch.Tensor):
        return fn(value) if value.dim() > 0 and value.shape[0] == n_rows else value
    if isinstance(value, (tuple, list)):
        return type(value)(map_per_row(v, n_rows, fn) for v in value)
    if isinstance(value, dict):
        return {k: map_per_row(v, n_rows, fn) for k, v in value.items()}
    return value


def repeat_rows(value: Any, n_rows: int, n_masks: int) -> Any:
    """Repeat every per-row tensor in ``value`` for ``n_masks`` masks (mask-major rows):
    ``[n_rows, ...] -> [n_masks * n_rows, ...]``."""
    if n_masks == 1:
        return value
    return map_per_row(value, n_rows, lambda t: t.repeat(n_masks, *([1] * (t.dim() - 1))))


def first_row(value: Any, n_rows: int) -> Any:
    """The first row's slice ``[1, ...]`` of every per-row tensor in ``value``."""
    return map_per_row(value, n_rows, lambda t: t[:1])


def _strip_caches(value: Any) -> Any:
    # A KV cache object must not be shared between our repeated block calls.
    return None if type(value).__name__.endswith("Cache") else value


def prepare_block_inputs(value: Any, dtype: torch.dtype) -> Any:
    """Cast captured block inputs to the run dtype and make additive attention masks safe.

    A left-padded row's padding positions attend to nothing; in bf16 their all-masked
    softmax gives NaN, which ``0 * NaN`` then carries into real positions. Letting every
    position attend to itself (real positions already do, causally) keeps padding finite
    without changing any real position.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() == 4 and value.shape[-1] == value.shape[-2]:  # [b, 1, q, k] attention mask
            value = value.clone()
            if value.dtype == torch.bool:
                value.diagonal(dim1=-2, dim2=-1).fill_(True)
                return value
            if value.is_floating_point():
                value = value.clamp(min=torch.finfo(dtype).min).to(dtype)
                value.diagonal(dim1=-2, dim2=-1).fill_(0.0)
                return value
        if value.is_floating_point():
            return value.to(dtype)
        return value
    if isinstance(value, tuple):
        return tuple(prepare_block_inputs(v, dtype) for v in value)
    if isinstance(value, list):
        return [prepare_block_inputs(v, dtype) for v in value]
    if isinstance(value, dict):
        return {k: prepare_block_inputs(v, dtype) for k, v in value.items()}
    return value


def capture_block_inputs(
    model: Any, ids: torch.Tensor, attention: torch.Tensor, layer: int, dtype: torch.dtype
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The inputs block ``layer`` receives in ``model``'s clean forward of ``ids``.

    Args:
        model: the bridge whose forward computes the inputs (its blocks 0…layer-1 run).
        ids: ``long[b, pos]`` token ids, left-padded.
        attention: ``long[b, pos]`` attention mask (1 = real token).
        layer: the block whose inputs are captured; the forward stops there.
        dtype: the dtype the blocks will be re-run in (floating inputs are cast to it).

    Returns:
        ``(args, kwargs)``: ``args[0]`` is the hidden state ``[b, pos, d_model]``; ``kwargs``
        are block ``layer``'s keyword arguments (attention mask, rotary embeddings, position
        ids…), KV caches removed, prepared by :func:`prepare_block_inputs`.
    """
    captured: dict[str, Any] = {}

    def grab(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured["args"] = tuple(_strip_caches(a) for a in args)
        captured["kwargs"] = {k: _strip_caches(v) for k, v in kwargs.items()}
        raise _StopAfterCapture

    handle = model.blocks[layer].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        model(ids, attention_mask=attention, use_cache=False)
    except _StopAfterCapture:
        pass
    finally:
        handle.remove()
    if "args" not in captured:
        raise GameError(f"Block {layer} was never called; unsupported model structure.")
    args, kwargs = captured["args"], captured["kwargs"]
    if not args:  # hidden states passed by keyword
        args = (kwargs.pop("hidden_states"),)
    return prepare_block_inputs(args, dtype), prepare_block_inputs(kwargs, dtype)


@torch.inference_mode()
def question_chunks(
    model: Any,
    ids: torch.Tensor,
    attention: torch.Tensor,
    layer: int,
    dtype: torch.dtype,
    rows_per_batch: Callable[[int], int],
) -> list[QuestionChunk]:
    """Group sequences by length and capture the inputs of block ``layer`` for each group.

    Args:
        model, layer, dtype: as :func:`capture_block_inputs`.
        ids, attention: ``long[units, width]`` every sequence the game runs, left-padded.
        rows_per_batch: rows that fit one micro-batch for sequences of a given padded length;
            a chunk holds at most that many sequences.

    Returns:
        Chunks in order of decreasing length; each keeps only its own width (the left padding
        all its sequences share is dropped).
    """
    lengths = attention.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    chunks: list[QuestionChunk] = []
    start = 0
    while start < len(order):
        positions = int(lengths[order[start]])
        size = max(1, min(len(order) - start, rows_per_batch(positions)))
        index = order[start : start + size]
        chunk_ids, chunk_mask = ids[index], attention[index]
        width = int(chunk_mask.sum(dim=1).max())
        chunk_ids, chunk_mask = chunk_ids[:, -width:], chunk_mask[:, -width:]  # drop shared left pad
        args, kwargs = capture_block_inputs(model, chunk_ids, chunk_mask, layer, dtype)
        chunks.append(QuestionChunk(index, args, kwargs))
        start += size
    return chunks


def run_blocks(model: Any, chunk: QuestionChunk, n_masks: int, first_layer: int) -> torch.Tensor:
    """Run blocks ``first_layer``… on the chunk's captured inputs, repeated for ``n_masks`` masks.

    Every block is called with the positional and keyword inputs captured at block
    ``first_layer`` (only the hidden state changes from block to block). Hooks registered on
    ``model`` (the ablation hooks) fire as in a full forward; the caller sets one mask row per
    output row first.

    Returns:
        The final hidden state before the final norm, ``[n_masks * qc, pos, d_model]``
        (mask-major rows).
    """
    args = repeat_rows(chunk.block_args, chunk.size, n_masks)
    kwargs = repeat_rows(chunk.block_kwargs, chunk.size, n_masks)
    hidden, rest = args[0], args[1:]
    for layer in range(first_layer, model.cfg.n_layers):
        out = model.blocks[layer](hidden, *rest, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


__all__ = [
    "QuestionChunk", "capture_block_inputs", "first_row", "map_per_row", "prepare_block_inputs",
    "question_chunks", "repeat_rows", "run_blocks",
]
