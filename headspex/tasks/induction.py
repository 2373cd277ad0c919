"""Induction: predict the next token of a repeated random token sequence.

Each prompt is ``[BOS] t_1 t_2 ... t_n t_1 t_2 ... t_k`` (``n = seq_len`` distinct random
tokens, then the first ``k`` of them again, ``1 <= k < n``); the answer is ``t_{k+1}``.
A model with induction heads copies it from the first repeat. The candidates are the
correct token and ``n_candidates - 1`` other tokens of the same sequence (in a seeded
random order), so the restricted softmax asks "which token of this sequence comes next"
rather than being dominated by unrelated vocabulary.

Prompts are token sequences: :class:`~headspex.tasks.base.PromptSet.input_ids` carries the
exact ids, and ``prompts`` is only their decoding for display. Model runners must feed
``input_ids`` when present (decode -> encode is not guaranteed to round-trip). Tokens are
still drawn from those that round-trip on their own (``encode(decode([t])) == [t]``) and
are not special tokens, to keep the decoded text readable.

The splits ``reference``, ``attribution``, ``evaluation`` hold ``n_reference``,
``n_prompts`` and ``n_evaluation`` prompts drawn from one seeded generator; prompts are
identified by a hash of their token ids and the splits are checked to be disjoint.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from headspex.tasks.base import (
    SPLIT_NAMES,
    PromptSet,
    PromptSetsBySplit,
    TaskError,
    check_disjoint,
    question_fingerprint,
)
from headspex.types import Metric


class InductionTask(PromptSetsBySplit):
    """Repeated random tokens as a :class:`headspex.tasks.base.Task`.

    Args:
        tokenizer: transformers tokenizer of the model (vocabulary and BOS token).
        n_prompts: prompts in the ``attribution`` split.
        seq_len: length ``n`` of the random sequence before it repeats (>= 2).
        seed: seed of the token draws and split assignment.
        n_candidates: candidate tokens per prompt (2 .. seq_len), the correct one included.
        n_reference: prompts in ``reference`` (default ``n_prompts``).
        n_evaluation: prompts in ``evaluation`` (default ``n_prompts``).
        prepend_bos: start each prompt with the tokenizer's BOS token when it has one.
    """

    default_metric: str = Metric.LOGPROB

    def __init__(
        self,
        tokenizer: Any,
        n_prompts: int = 32,
        seq_len: int = 12,
        seed: int = 0,
        n_candidates: int = 4,
        n_reference: int | None = None,
        n_evaluation: int | None = None,
        prepend_bos: bool = True,
    ) -> None:
        if seq_len < 2:
            raise TaskError(f"seq_len must be >= 2; got {seq_len}")
        if not 2 <= n_candidates <= seq_len:
            raise TaskError(f"n_candidates must lie in [2, seq_len={seq_len}]; got {n_candidates}")
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.seed = seed
        self.n_candidates = n_candidates
        self.sizes = {
            "reference": n_prompts if n_reference is None else n_reference,
            "attribution": n_prompts,
            "evaluation": n_prompts if n_evaluation is None else n_evaluation,
        }
        bos = getattr(tokenizer, "bos_token_id", None)
        self.bos_id: int | None = bos if prepend_bos and bos is not None else None
        self.name = f"induction/len{seq_len}/c{n_candidates}"
        rng = random.Random(seed)
        self._vocab = self._usable_tokens(rng)
        seen: set[str] = set()
        self._prompt_sets: dict[str, PromptSet] = {}
        for split in SPLIT_NAMES:
            self._prompt_sets[split] = self._draw(self.sizes[split], rng, seen)
        check_disjoint({split: ps.question_ids for split, ps in self._prompt_sets.items()})

    def _usable_tokens(self, rng: random.Random) -> list[int]:
        # Checking every token of a 50k vocabulary is slow; sample a shuffled order and keep
        # the first tokens that are not special and round-trip through decode/encode.
        special = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        order = list(range(len(self.tokenizer)))
        rng.shuffle(order)
        wanted = max(4 * self.seq_len, 64)
        usable: list[int] = []
        for token in order:
            if token in special:
                continue
            text = self.tokenizer.decode([token])
            if text.strip() and text.isprintable() and self.tokenizer.encode(text, add_special_tokens=False) == [token]:
                usable.append(token)
                if len(usable) >= wanted:
                    break
        if len(usable) < self.seq_len:
            raise TaskError(f"Only {len(usable)} usable tokens for seq_len={self.seq_len}")
        return usable

    def _draw(self, count: int, rng: random.Random, seen: set[str]) -> PromptSet:
        prompts, input_ids, candidates, correct, ids = [], [], [], [], []
        attempts = 0
        while len(input_ids) < count:
            attempts += 1
            if attempts > 100 * max(count, 1):
                raise TaskError("Could not draw enough distinct induction prompts; raise seq_len or the vocabulary")
            sequence = rng.sample(self._vocab, self.seq_len)
            cut = rng.randrange(1, self.seq_len)  # answer = sequence[cut], at least one repeated token before it
            tokens = ([self.bos_id] if self.bos_id is not None else []) + sequence + sequence[:cut]
            qid = question_fingerprint(*map(str, tokens))
            if qid in seen:
                continue
            seen.add(qid)
            answer = sequence[cut]
            others = rng.sample([t for t in sequence if t != answer], self.n_candidates - 1)
            position = rng.randrange(self.n_candidates)
            row = others[:position] + [answer] + others[position:]
            input_ids.append(tokens)
            prompts.append(self.tokenizer.decode(tokens))
            candidates.append(row)
            correct.append(position)
            ids.append(qid)
        return PromptSet(
            prompts=prompts,
            candidate_token_ids=torch.tensor(candidates, dtype=torch.long).view(count, self.n_candidates),
            correct_index=torch.tensor(correct, dtype=torch.long),
            question_ids=ids,
            input_ids=input_ids,
        )

    def describe(self) -> dict:
        """JSON-able provenance of the task."""
        return {
            "task": "induction",
            "name": self.name,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "n_candidates": self.n_candidates,
            "bos_token_id": self.bos_id,
            "split_sizes": dict(self.sizes),
            "template": "[BOS] t_1..t_n t_1..t_k -> t_{k+1}; candidates from the same sequence",
            "default_metric": self.default_metric,
            "uses_input_ids": True,
        }
