"""The ablation game: masks ``bool[m, n]`` (True = kept) -> task values ``float[m]``.

* :mod:`~headspex.game.core` – :class:`AblationGame`: the contract, question chunks,
  micro-batches, the mask store (cache and resume).
* :mod:`~headspex.game.blocks` – the block runner: the inputs of blocks L… captured once per
  question (each block its own: layer types differ), blocks L… re-run per (mask, question) row.
* :mod:`~headspex.game.self_check` – once per game, its rows against the bridge's own forward
  (a difference raises :class:`GameError`).
* :mod:`~headspex.game.block_tail` – the shortcuts: block L's attention output cached per
  question, the last block at the scored positions only (``AblationGame(shortcuts=…)``).
* :mod:`~headspex.game.shared_prefix` / :mod:`~headspex.game.prefix_path` – a prefix shared by
  many sequences (shots, a cloze context) runs once per mask; suffixes attend to its keys and values.
* :mod:`~headspex.game.settings` – memory budget per micro-batch and run dtype.
* :mod:`~headspex.game.scoring` – the letter scorer and the one cloze scorer
  (:func:`continuation_logliks`), also as plain forwards on cloze items
  (:func:`cloze_choice_logliks`).
* :mod:`~headspex.game.prompts` – the sequences a game runs, from the task's prompt sets.
* :mod:`~headspex.game.fused_attention` – SDPA attention in the blocks the game runs.
"""

from __future__ import annotations

from .core import AblationGame
from .errors import GameError
from .scoring import (
    Reduction,
    candidate_logits,
    cloze_choice_logliks,
    continuation_logliks,
    continuation_logliks_from_hidden,
    right_aligned_targets,
    unembedding,
)

__all__ = [
    "AblationGame", "GameError", "Reduction", "candidate_logits", "cloze_choice_logliks", "continuation_logliks",
    "continuation_logliks_from_hidden", "right_aligned_targets", "unembedding",
]
