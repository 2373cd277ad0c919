"""The block runner: capture what blocks L… receive once per question, re-run them per row.

Every player of a game sits at layer ≥ L, so nothing before block L depends on the mask.
The runner runs the model's clean forward once with a forward pre-hook on every block from
L on: block L's hidden state is captured, and each block's other inputs (attention mask,
rotary embeddings, position ids) are captured for that block, because they differ between
layer types: Gemma-2/3 alternate sliding-window and global layers, with different masks and
(Gemma-3) different rotary bases, and reusing one block's inputs for another's silently
changes the values. Blocks whose inputs are equal share one captured object. The forward
stops before the last block runs; blocks L… are later called with those inputs repeated
once per mask (rows are mask-major: mask 0's sequences, then mask 1's…).

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


#: The inputs of one block besides its hidden state: (positional args after it, keyword args).
BlockInputs = tuple[tuple[Any, ...], dict[str, Any]]


@dataclass
class QuestionChunk:
    """Sequences that share one padded length, with the captured inputs of every block run.

    A sequence is a question (letter tasks) or a (question, choice) pair (cloze tasks).
    ``layer_inputs[i]`` is what block ``L + i`` receives besides the hidden state; blocks
    with equal inputs share one object (and so one repeat per micro-batch).
    """

    unit_index: torch.Tensor  # long[qc] positions in the game's sequence list
    hidden: torch.Tensor  # [qc, pos, d_model] residual stream entering block L
    layer_inputs: tuple[BlockInputs, ...]  # per block L, L+1, …

    @property
    def block_args(self) -> tuple[Any, ...]:
        """Positional args of block L; ``args[0]`` is the hidden state ``[qc, pos, d]``."""
        return (self.hidden, *self.layer_inputs[0][0])

    @property
    def block_kwargs(self) -> dict[str, Any]:
        """Keyword args of block L (attention mask, rotary embeddings, …)."""
        return self.layer_inputs[0][1]

    @property
    def size(self) -> int:
        """``qc``: the number of sequences in the chunk."""
        return int(self.unit_index.shape[0])

    @property
    def positions(self) -> int:
        """``pos``: the padded length of the chunk's sequences."""
        return int(self.hidden.shape[1])

    def select(self, rows: torch.Tensor) -> "QuestionChunk":
        """The chunk cut down to the sequences ``rows`` (``long[k]`` indices into the chunk)."""
        done: dict[int, Any] = {}  # shared inputs stay shared

        def cut(value: Any) -> Any:
            if id(value) not in done:
                done[id(value)] = map_per_row(value, self.size, lambda t: t[rows])
            return done[id(value)]

        return QuestionChunk(self.unit_index[rows], cut(self.hidden), tuple(cut(inputs) for inputs in self.layer_inputs))

    def first_sequence(self) -> "QuestionChunk":
        """The chunk cut down to its first sequence (same block inputs, one row)."""
        return self.select(torch.tensor([0]))


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


def same_inputs(first: Any, second: Any) -> bool:
    """Whether two captured block inputs are equal: the same objects, or tensors of equal
    shape, dtype and values, in the same nesting of tuples, lists and dicts."""
    if first is second:
        return True
    if isinstance(first, torch.Tensor) or isinstance(second, torch.Tensor):
        return (isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor) and first.shape == second.shape
                and first.dtype == second.dtype and bool(torch.equal(first, second)))
    if isinstance(first, (tuple, list)) and isinstance(second, (tuple, list)):
        return len(first) == len(second) and all(same_inputs(a, b) for a, b in zip(first, second))
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(same_inputs(first[k], second[k]) for k in first)
    return type(first) is type(second) and bool(first == second)


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
) -> tuple[torch.Tensor, tuple[BlockInputs, ...]]:
    """What blocks ``layer``… receive in ``model``'s clean forward of ``ids``.

    Args:
        model: the bridge whose forward computes the inputs (its blocks 0…layer-1 run).
        ids: ``long[b, pos]`` token ids, left-padded.
        attention: ``long[b, pos]`` attention mask (1 = real token).
        layer: the first block whose inputs are captured; the forward stops before the last block.
        dtype: the dtype the blocks will be re-run in (floating inputs are cast to it).

    Returns:
        ``(hidden, layer_inputs)``: block ``layer``'s hidden state ``[b, pos, d_model]``, and per
        block ``layer``, ``layer + 1``, … its other positional args and its keyword args
        (attention mask, rotary embeddings, position ids…), KV caches removed, prepared by
        :func:`prepare_block_inputs`; equal input sets are one shared object.
    """
    blocks = range(layer, model.cfg.n_layers)
    captured: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def grab(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        kwargs = {k: _strip_caches(v) for k, v in kwargs.items()}
        if not args:  # hidden states passed by keyword
            args = (kwargs.pop("hidden_states"),)
        captured.append((tuple(_strip_caches(a) for a in args), kwargs))
        if len(captured) == len(blocks):
            raise _StopAfterCapture

    handles = [model.blocks[i].register_forward_pre_hook(grab, with_kwargs=True) for i in blocks]
    try:
        model(ids, attention_mask=attention, use_cache=False)
    except _StopAfterCapture:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if len(captured) != len(blocks):
        raise GameError(f"Blocks {layer}…{blocks[-1]} were not each called once; unsupported model structure.")
    unique: list[tuple[BlockInputs, BlockInputs]] = []  # (as captured, as prepared)
    layer_inputs = []
    for args, kwargs in captured:
        raw = (args[1:], kwargs)
        prepared = next((ready for seen, ready in unique if same_inputs(seen, raw)), None)
        if prepared is None:
            prepared = (prepare_block_inputs(args[1:], dtype), prepare_block_inputs(kwargs, dtype))
            unique.append((raw, prepared))
        layer_inputs.append(prepared)
    return prepare_block_inputs(captured[0][0][0], dtype), tuple(layer_inputs)


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
    lengths = attention.sum(dim=1).cpu()  # chunk.unit_index lives on the CPU (it indexes numpy arrays)
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
        hidden, layer_inputs = capture_block_inputs(model, chunk_ids, chunk_mask, layer, dtype)
        chunks.append(QuestionChunk(index, hidden, layer_inputs))
        start += size
    return chunks


def run_blocks(model: Any, chunk: QuestionChunk, n_masks: int, first_layer: int) -> torch.Tensor:
    """Run blocks ``first_layer``… on the chunk's captured inputs, repeated for ``n_masks`` masks.

    Every block is called with its own captured inputs; the hidden state flows from block to
    block. Hooks registered on ``model`` (the ablation hooks) fire as in a full forward; the
    caller sets one mask row per output row first.

    Returns:
        The final hidden state before the final norm, ``[n_masks * qc, pos, d_model]``
        (mask-major rows).
    """
    hidden = repeat_rows(chunk.hidden, chunk.size, n_masks)
    repeated: dict[int, BlockInputs] = {}  # blocks with equal inputs share one repeat
    for layer, inputs in zip(range(first_layer, model.cfg.n_layers), chunk.layer_inputs):
        if id(inputs) not in repeated:
            repeated[id(inputs)] = repeat_rows(inputs, chunk.size, n_masks)
        rest, kwargs = repeated[id(inputs)]
        out = model.blocks[layer](hidden, *rest, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


__all__ = [
    "BlockInputs", "QuestionChunk", "capture_block_inputs", "map_per_row", "prepare_block_inputs",
    "question_chunks", "repeat_rows", "run_blocks", "same_inputs",
]
