"""Shared prefixes (shortcut 1): a prefix common to many sequences runs once per mask.

In a k-shot prompt the shots are the same for every question of a subject, and in cloze
scoring a question's continuations share its context. Under a given mask the prefix's keys
and values at blocks ≥ L depend on the mask but not on what follows the prefix (attention is
causal), so per micro-batch of masks the game runs:

1. the **prefix** once per mask (``n_masks`` rows of ``P`` positions), with every attention
   recording its keys and values (:class:`PrefixKeyValues` stands in for the transformers
   KV cache: ``cache.update`` is the one point where every HF attention hands over its
   rotated keys and values);
2. each **suffix** (the rest of a sequence, ``S`` positions) per (mask, sequence) row, whose
   attention prepends its mask's prefix keys and values: queries ``S``, keys ``P + S``.

Exactness: suffixes are right-padded after the prefix, so every real token keeps the
position it has in its own unpadded sequence (absolute and rotary positions, sliding
windows); the block inputs (attention mask, rotary tables, position ids) are cut from a clean
forward of those very sequences, so the masks and windows are the model's own. The scored
positions (the last one, or the answer span) always lie in the suffix. The game checks the
path against its general path once per game and raises if they differ; and after every
suffix run every attention must have prepended its prefix (a layer that skipped the cache
would silently attend to the suffix only), else it raises.

Where it applies: every block the game runs after L (and L itself, unless its attention is
cached) must run the fused HF attention (:mod:`headspex.game.fused_attention`), whose
``cache`` argument reaches the HF module; the ablation must not depend on the position or
the question (resample ablation draws a source prompt per question, aligned from the end,
so the prefix's ablated activations differ between questions); and the prefix must save
enough positions (:data:`MAX_POSITION_SHARE`).

Shapes: a group's prefix is ``P`` tokens; a suffix chunk holds ``qc`` sequences right-padded
to ``S``; rows are mask-major (``n_masks * qc``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .blocks import BlockInputs, QuestionChunk, capture_block_inputs, run_blocks
from .errors import GameError

#: The prefix path is taken when it runs at most this share of today's positions per mask;
#: below that saving, two block passes per mask cost more than they save.
MAX_POSITION_SHARE = 0.75

# Block keyword args the path knows how to cut to the prefix's or the suffix's positions.
_CACHE_KWARGS = ("cache", "past_key_values", "past_key_value")
_POSITION_KWARGS = ("position_embeddings", "position_ids", "cache_position")


class PrefixKeyValues:
    """The keys and values of one prefix per mask, handed to HF attention as its ``cache``.

    ``record()``: every ``update(key, value, layer)`` stores ``[n_masks, kv_heads, P, d_head]``
    and returns them as they are. ``attend(rows_per_prefix)``: ``update`` returns the stored
    prefix repeated for each of a mask's ``rows_per_prefix`` suffix rows, followed by the
    suffix's own keys and values (``[n_masks * qc, kv_heads, P + S, d_head]``).
    """

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.rows_per_prefix: int | None = None
        self.attended: set[int] = set()

    def record(self) -> None:
        self.keys.clear()
        self.values.clear()
        self.rows_per_prefix = None

    def attend(self, rows_per_prefix: int) -> None:
        self.rows_per_prefix = rows_per_prefix
        self.attended = set()

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The HF cache call: ``key``/``value`` ``[rows, kv_heads, pos, d_head]`` of ``layer_idx``."""
        if self.rows_per_prefix is None:
            self.keys[layer_idx], self.values[layer_idx] = key, value
            return key, value
        if layer_idx not in self.keys:
            raise GameError(f"Layer {layer_idx}'s attention has no recorded prefix; the shared-prefix path "
                            "cannot run this model (build the game with shortcuts=False).")
        self.attended.add(layer_idx)
        repeat = self.rows_per_prefix
        prefix_key = self.keys[layer_idx].repeat_interleave(repeat, dim=0)
        prefix_value = self.values[layer_idx].repeat_interleave(repeat, dim=0)
        return torch.cat([prefix_key, key], dim=-2), torch.cat([prefix_value, value], dim=-2)


@dataclass(frozen=True)
class PrefixGroupPlan:
    """Sequences that share their first ``prefix_length`` tokens (``units``: game sequence indices)."""

    units: np.ndarray
    prefix_length: int


def plan_prefix_groups(
    tokens: Sequence[Sequence[int]], scored: Sequence[int], unit_question: np.ndarray
) -> tuple[list[PrefixGroupPlan] | None, str]:
    """Group the game's sequences by a shared prefix, or say why not.

    Two groupings are weighed: all sequences together (the k-shot shots), and the sequences
    of each question together (a cloze question's choices share its context). The one that
    runs fewer positions per mask is taken if it runs at most :data:`MAX_POSITION_SHARE` of
    today's positions.

    Args:
        tokens: each sequence's real token ids (no padding).
        scored: how many of each sequence's last positions are scored (1, or the answer length).
        unit_question: ``int[units]`` the question of each sequence.

    Returns:
        ``(groups, why)``: the groups (``None`` when the path does not pay) and a sentence.
    """
    lengths = np.array([len(t) for t in tokens])
    today = int(lengths.sum())
    candidates = {"all sequences": [np.arange(len(tokens))]}
    if len(set(unit_question.tolist())) < len(tokens):
        candidates["each question's sequences"] = [np.flatnonzero(unit_question == q)
                                                   for q in dict.fromkeys(unit_question.tolist())]
    best: tuple[int, str, list[PrefixGroupPlan]] | None = None
    for name, groupings in candidates.items():
        groups = [PrefixGroupPlan(units, _shared_length(tokens, scored, units)) for units in groupings]
        positions = sum(int(lengths[g.units].sum()) - (len(g.units) - 1) * g.prefix_length for g in groups)
        if best is None or positions < best[0]:
            best = (positions, name, groups)
    assert best is not None
    positions, name, groups = best
    share = positions / max(today, 1)
    longest = max(g.prefix_length for g in groups)
    if share > MAX_POSITION_SHARE:
        return None, (f"the longest prefix the sequences share is {longest} tokens: running it once per mask would "
                      f"run {share:.0%} of the positions (the path pays below {MAX_POSITION_SHARE:.0%})")
    unshared = [g for g in groups if g.prefix_length == 0]
    if unshared:  # every sequence must belong to a group that runs it: no group, no value
        return None, (f"{len(unshared)} of the {len(groups)} groups ({name}) share no prefix before their scored "
                      "positions")
    return groups, (f"{name} share a prefix (up to {longest} tokens) that runs once per mask: {positions} positions "
                    f"per mask instead of {today} ({share:.0%})")


def _shared_length(tokens: Sequence[Sequence[int]], scored: Sequence[int], units: np.ndarray) -> int:
    """Longest common prefix of ``units``' tokens, cut so every scored position stays after it."""
    first = tokens[int(units[0])]
    limit = min(len(tokens[int(u)]) - int(scored[int(u)]) for u in units)
    length = 0
    while length < limit and all(tokens[int(u)][length] == first[length] for u in units):
        length += 1
    return length if len(units) > 1 else 0


@dataclass
class SuffixChunk:
    """Sequences of one group after its prefix: a chunk of ``S`` right-padded positions whose
    block inputs let each query see the prefix's ``P`` keys and its own."""

    chunk: QuestionChunk  # hidden [qc, S, d]; attention masks [qc, 1, S, P + S]
    lengths: torch.Tensor  # long[qc] real suffix lengths
    z: torch.Tensor | None  # [qc, S, ...] block L's cached attention output, or None


@dataclass
class PrefixGroup:
    """One shared prefix and the suffix chunks that attend to it."""

    prefix: QuestionChunk  # hidden [1, P, d]; block inputs cut to the prefix
    prefix_z: torch.Tensor | None  # [1, P, ...] block L's cached attention output, or None
    suffixes: list[SuffixChunk] = field(default_factory=list)
    cache: PrefixKeyValues = field(default_factory=PrefixKeyValues)

    @property
    def prefix_length(self) -> int:
        return self.prefix.positions


class UnsupportedBlockInputs(Exception):
    """A block input the path does not know how to cut to the prefix or the suffix."""


def cut_block_inputs(inputs: BlockInputs, rows: torch.Tensor, queries: slice, keys: slice,
                     n_rows: int, cache: PrefixKeyValues) -> BlockInputs:
    """Block inputs for a query/key window of the captured full sequences.

    Args:
        inputs: one block's captured (positional args, kwargs) for ``n_rows`` full sequences.
        rows: ``long[k]`` which sequences to keep.
        queries, keys: the positions that run (queries) and that attention sees (keys).
        cache: the group's :class:`PrefixKeyValues`, passed as the block's cache argument.

    Raises:
        UnsupportedBlockInputs: an input whose position layout this function does not know.
    """
    args, kwargs = inputs
    if any(isinstance(a, torch.Tensor) for a in args):
        raise UnsupportedBlockInputs("the blocks take positional tensor inputs besides the hidden state")
    cut: dict[str, Any] = {}
    cache_given = False
    for name, value in kwargs.items():
        if name in _CACHE_KWARGS:
            cut[name] = cache
            cache_given = True
        elif name == "attention_mask":
            if not (isinstance(value, torch.Tensor) and value.dim() == 4):
                raise UnsupportedBlockInputs("the blocks get no 4-d attention mask")
            cut[name] = _rows(value, rows, n_rows)[:, :, queries, keys]
        elif name in _POSITION_KWARGS:
            cut[name] = _cut_positions(value, rows, queries, n_rows)
        elif _holds_tensor(value):
            raise UnsupportedBlockInputs(f"block input '{name}' has an unknown position layout")
        else:
            cut[name] = value
    if not cache_given:
        raise UnsupportedBlockInputs("the blocks take no KV cache argument")
    return args, cut


def _rows(value: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    return value[rows] if value.shape[0] == n_rows and n_rows > 1 else value


def _cut_positions(value: Any, rows: torch.Tensor, queries: slice, n_rows: int) -> Any:
    """Rotary tables ``[b, pos, d]``, position ids ``[b, pos]`` or cache positions ``[pos]``."""
    if isinstance(value, (tuple, list)):
        return type(value)(_cut_positions(v, rows, queries, n_rows) for v in value)
    if not isinstance(value, torch.Tensor):
        if value is None:
            return None
        raise UnsupportedBlockInputs(f"unknown position input of type {type(value).__name__}")
    if value.dim() == 1:
        return value[queries]
    return _rows(value, rows, n_rows)[:, queries].contiguous()


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    return False


@torch.inference_mode()
def build_prefix_group(
    model: Any,
    tokens: Sequence[Sequence[int]],
    plan: PrefixGroupPlan,
    layer: int,
    dtype: torch.dtype,
    suffix_rows: Callable[[int, int], int],
    capture_z: Callable[[QuestionChunk], torch.Tensor] | None,
) -> PrefixGroup:
    """Capture a group's prefix and suffix inputs from clean forwards of its full sequences.

    Args:
        model: the bridge whose clean forward computes blocks 0…L-1 (as :func:`capture_block_inputs`).
        tokens: every game sequence's real token ids; ``plan`` says which share the prefix.
        layer, dtype: L and the run dtype.
        suffix_rows: sequences per suffix chunk for (prefix length, suffix length).
        capture_z: block L's attention output for a chunk (cached attention), or ``None``.
    """
    length = plan.prefix_length
    units = sorted(plan.units.tolist(), key=lambda u: -len(tokens[u]))  # longest first, like question_chunks
    group: PrefixGroup | None = None
    cache = PrefixKeyValues()
    start = 0
    while start < len(units):
        longest = len(tokens[units[start]]) - length
        size = max(1, min(len(units) - start, suffix_rows(length, longest)))
        members = units[start : start + size]
        ids = torch.zeros(len(members), length + longest, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, unit in enumerate(members):  # right-padded: real tokens keep their own positions
            ids[row, : len(tokens[unit])] = torch.tensor(list(tokens[unit]))
            attention[row, : len(tokens[unit])] = 1
        device = next(model.parameters()).device
        hidden, layer_inputs = capture_block_inputs(model, ids.to(device), attention.to(device), layer, dtype)
        full = QuestionChunk(torch.tensor(members), hidden, layer_inputs)
        z = capture_z(full) if capture_z is not None else None
        rows = torch.arange(len(members))
        suffix_inputs = _cut_all(layer_inputs, rows, slice(length, None), slice(None), len(members), cache)
        suffix = QuestionChunk(torch.tensor(members), hidden[:, length:].contiguous(), suffix_inputs)
        lengths = torch.tensor([len(tokens[u]) - length for u in members])
        if group is None:
            first = torch.tensor([0])
            prefix_inputs = _cut_all(layer_inputs, first, slice(None, length), slice(None, length), len(members), cache)
            prefix = QuestionChunk(torch.tensor([-1]), hidden[:1, :length].contiguous(), prefix_inputs)
            group = PrefixGroup(prefix, None if z is None else z[:1, :length].contiguous(), cache=cache)
        group.suffixes.append(SuffixChunk(suffix, lengths, None if z is None else z[:, length:].contiguous()))
        start += size
    assert group is not None
    return group


def _cut_all(layer_inputs: tuple[BlockInputs, ...], rows: torch.Tensor, queries: slice, keys: slice,
             n_rows: int, cache: PrefixKeyValues) -> tuple[BlockInputs, ...]:
    """:func:`cut_block_inputs` for every block; blocks that shared inputs still share them."""
    done: dict[int, BlockInputs] = {}
    for inputs in layer_inputs:
        if id(inputs) not in done:
            done[id(inputs)] = cut_block_inputs(inputs, rows, queries, keys, n_rows, cache)
    return tuple(done[id(inputs)] for inputs in layer_inputs)


def run_group_suffixes(
    model: Any,
    group: PrefixGroup,
    n_masks: int,
    first_layer: int,
    attending_layers: Sequence[int],
    set_rows: Callable[[int], None],
    run_cached: Callable[[QuestionChunk, torch.Tensor, int], torch.Tensor],
) -> list[torch.Tensor]:
    """Run a group's prefix once per mask, then every suffix chunk against it.

    Args:
        model: the bridge (ablation hooks registered, fused attention on).
        group: :func:`build_prefix_group`'s output.
        n_masks: masks in this micro-batch.
        first_layer: L.
        attending_layers: the layers whose attention must prepend the prefix (checked).
        set_rows: sets the ablator's mask rows for ``k`` rows per mask (mask-major).
        run_cached: blocks L… with block L's attention from a cached z (shortcut 2).

    Returns:
        Per suffix chunk, the final hidden state before the final norm,
        ``[n_masks * qc, S, d_model]`` (mask-major rows).
    """
    group.cache.record()
    set_rows(1)
    if group.prefix_z is None:
        run_blocks(model, group.prefix, n_masks, first_layer)
    else:
        run_cached(group.prefix, group.prefix_z, n_masks)
    outputs = []
    for suffix in group.suffixes:
        group.cache.attend(suffix.chunk.size)
        set_rows(suffix.chunk.size)
        try:
            if suffix.z is None:
                hidden = run_blocks(model, suffix.chunk, n_masks, first_layer)
            else:
                hidden = run_cached(suffix.chunk, suffix.z, n_masks)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as err:  # e.g. an attention that dropped the prefix meets the [S, P + S] mask
            raise GameError(f"The attention did not attend to the shared prefix ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:160]}); build the game with shortcuts=False and "
                            "report the model.") from err
        missing = sorted(set(attending_layers) - group.cache.attended)
        if missing:
            raise GameError(f"The attention of layers {missing} did not attend to the shared prefix; "
                            "build the game with shortcuts=False and report the model.")
        outputs.append(hidden)
    return outputs


def right_aligned_window(hidden: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Each row's last ``width`` real positions, right-aligned like a left-padded batch.

    ``hidden [rows, S, d]`` right-padded with ``lengths long[rows]`` real positions ->
    ``[rows, width, d]``; a row with fewer than ``width`` positions repeats its first one
    at the front (those positions are never scored).
    """
    offsets = lengths[:, None] - width + torch.arange(width)[None, :]
    index = offsets.clamp(min=0).to(hidden.device)
    return hidden.gather(1, index[:, :, None].expand(-1, -1, hidden.shape[-1]))


__all__ = [
    "MAX_POSITION_SHARE", "PrefixGroup", "PrefixGroupPlan", "PrefixKeyValues", "SuffixChunk",
    "UnsupportedBlockInputs", "build_prefix_group", "cut_block_inputs", "plan_prefix_groups",
    "right_aligned_window", "run_group_suffixes",
]
