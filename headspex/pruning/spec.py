"""Applying a pruning: a small JSON-able spec (:class:`Pruning`) and its active handle.

A spec names the model source, the heads, the mode, reference info, and the mean vectors for
mean mode. ``pruning.apply(model)`` keeps the hook manager's :func:`headspex.ablation.ablate`
context open until ``handle.undo()``, so a pruned model *is* the original with those heads
ablated by the one implementation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..ablation import ReferenceActivations, ablate
from ..components import Head, Players, parse_component
from ..hooks import hook_name
from ..types import AblationMode
from .errors import PruningError

#: The ablation modes a fixed pruning allows: resample draws another prompt on every
#: forward, so it is not a fixed pruning.
PRUNING_MODES: tuple[AblationMode, ...] = (AblationMode.ZERO, AblationMode.ZERO_RESCALED, AblationMode.MEAN)
SPEC_FORMAT = "headspex.pruning.Pruning/1"


@dataclass
class Pruning:
    """A set of heads permanently ablated: a small, re-appliable spec.

    Attributes:
        heads: component names, e.g. ``("L27H3", "L28H0")``.
        mode: ``"zero"``, ``"zero_rescaled"`` (kept heads of each pruned layer × |H_l| / |kept|)
            or ``"mean"``.
        model_source: ``model.headspex_source`` of the model it was chosen on (checked on apply).
        means: for mean mode, ``{head name: float[d_head]}`` the replacement vector (the head's
            mean ``hook_z`` over every token of the reference prompts).
        reference: provenance of the means / calibration (task description, split, question ids).
        info: free JSON-able notes (strategy, k, players...).
    """

    heads: tuple[str, ...]
    mode: str = "zero"
    model_source: str | None = None
    means: dict[str, list[float]] | None = None
    reference: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parsed = [parse_component(h) for h in self.heads]
        if not all(isinstance(p, Head) for p in parsed):
            raise PruningError(f"A Pruning removes attention heads only; got {[str(p) for p in parsed if not isinstance(p, Head)]}")
        self.heads = tuple(str(p) for p in sorted(parsed, key=lambda p: p.sort_key))
        if self.mode not in PRUNING_MODES:
            raise PruningError(f"Unknown pruning mode '{self.mode}'; choose one of {tuple(map(str, PRUNING_MODES))} "
                               "(resample is random per forward, so it is not a fixed pruning)")
        if self.mode == "mean":
            missing = [h for h in self.heads if not self.means or h not in self.means]
            if missing:
                raise PruningError(f"Mean-mode pruning needs a mean vector for every head; missing {missing[:5]}. "
                                   "Build it with Pruning.from_removal(..., reference=ReferenceActivations...)")

    @classmethod
    def from_removal(
        cls,
        players: Players | Sequence[str],
        removed: Iterable[int],
        *,
        mode: str = "zero",
        model: Any | None = None,
        reference: ReferenceActivations | None = None,
        reference_info: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
    ) -> "Pruning":
        """Spec removing ``players[i]`` for each ``i`` in ``removed``.

        For mean mode, ``reference`` must cover the players' sites (e.g.
        ``ReferenceActivations.compute(model, reference_prompts, players)``).
        """
        names = list(players.names) if isinstance(players, Players) else [str(p) for p in players]
        heads = [names[i] for i in removed]
        means = None
        if mode == "mean":
            if reference is None:
                raise PruningError("Mean-mode pruning needs reference activations (ReferenceActivations.compute)")
            means = {}
            for name in heads:
                head = parse_component(name)
                hook = hook_name(head.layer, "z")
                if hook not in reference.means:
                    raise PruningError(f"The reference activations have no data for {hook} (head {name})")
                means[name] = reference.means[hook][head.head].detach().cpu().double().tolist()
        source = getattr(model, "headspex_source", None) if model is not None else None
        return cls(tuple(heads), mode, source, means, reference_info, dict(info or {}))

    # -- serialisation
    def to_json_dict(self) -> dict[str, Any]:
        """JSON-able dict (format tag included)."""
        return {"format": SPEC_FORMAT, "heads": list(self.heads), "mode": self.mode, "model_source": self.model_source,
                "means": self.means, "reference": self.reference, "info": self.info}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> "Pruning":
        """Inverse of :meth:`to_json_dict`."""
        if data.get("format") != SPEC_FORMAT:
            raise PruningError(f"Not a pruning spec (format {data.get('format')!r}, expected {SPEC_FORMAT!r})")
        return cls(tuple(data["heads"]), data["mode"], data.get("model_source"), data.get("means"),
                   data.get("reference"), dict(data.get("info") or {}))

    def save(self, path: str | Path) -> None:
        """Write the spec as JSON."""
        Path(path).write_text(json.dumps(self.to_json_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Pruning":
        """Read a spec written by :meth:`save`."""
        return cls.from_json_dict(json.loads(Path(path).read_text()))

    # -- application
    def _reference_activations(self, model: Any) -> ReferenceActivations | None:
        if self.mode != "mean":
            return None
        assert self.means is not None
        n_heads, d_head = int(model.cfg.n_heads), int(model.cfg.d_head)
        device = next(model.parameters()).device
        means: dict[str, torch.Tensor] = {}
        for name in self.heads:
            head = parse_component(name)
            hook = hook_name(head.layer, "z")
            # Unpruned heads' rows stay zero: they are never read (their keep factor is 1).
            table = means.setdefault(hook, torch.zeros(n_heads, d_head, device=device))
            vector = torch.tensor(self.means[name], dtype=torch.float32, device=device)
            if vector.shape != (d_head,):
                raise PruningError(f"Mean vector of {name} has shape {tuple(vector.shape)}; the model's d_head is {d_head}")
            table[head.head] = vector
        return ReferenceActivations(means=means, n_prompts=int((self.reference or {}).get("n_prompts", 0)))

    def apply(self, model: Any, *, check_source: bool = True) -> "AppliedPruning":
        """Ablate the heads on every later forward of ``model`` until ``handle.undo()``.

        Raises PruningError when ``check_source`` and the spec names another model.
        """
        source = getattr(model, "headspex_source", None)
        if check_source and self.model_source and source and source != self.model_source:
            raise PruningError(f"This pruning was made for model '{self.model_source}', not '{source}' "
                               "(pass check_source=False to apply it anyway)")
        return AppliedPruning(model, self)

    @contextmanager
    def applied(self, model: Any, *, check_source: bool = True) -> Iterator["AppliedPruning"]:
        """Context manager: the pruning is active inside the ``with`` block only."""
        handle = self.apply(model, check_source=check_source)
        try:
            yield handle
        finally:
            handle.undo()


class AppliedPruning:
    """Handle of an active pruning: the hook manager's ``ablate`` context, kept open.

    Other hooks (an AblationGame, caching) can be added and removed while it is active;
    TransformerLens only removes the hooks each context added.
    """

    def __init__(self, model: Any, pruning: Pruning) -> None:
        self.model = model
        self.pruning = pruning
        self._stack = ExitStack()
        self.ablator = self._stack.enter_context(
            ablate(model, list(pruning.heads), mode=pruning.mode, reference=pruning._reference_activations(model))
        )
        self.active = True

    def undo(self) -> None:
        """Remove the pruning's hooks (idempotent)."""
        if self.active:
            self._stack.close()
            self.active = False

    def __enter__(self) -> "AppliedPruning":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.undo()

