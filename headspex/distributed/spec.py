"""Picklable descriptions of a model, a task and a game, built inside each worker.

A loaded model is never pickled: a worker receives a :class:`GameSpec` (a few strings and
numbers) and builds its own model, task and :class:`~headspex.game.AblationGame` from it.
Every field is plain data, so a spec also serves as the game's identity (:meth:`GameSpec.key`).

This module imports neither torch nor Ray; the ``build`` methods import what they need.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import HeadspexError

TASK_KINDS: tuple[str, ...] = ("mmlu", "induction", "factory")


class SpecError(HeadspexError):
    """A model, task or game description that cannot be built as given."""


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads its model replica.

    Attributes:
        source: anything :func:`headspex.models.load_model` accepts (``"smollm2-135m"``, a
            ``.gguf`` path, a Hugging Face folder, ``"tiny-llama"``…). Paths must exist on
            every node of the cluster.
        dtype: ``"float32"`` | ``"bfloat16"`` | ``"float16"``; ``None`` = bfloat16 on an
            accelerator, float32 on CPU (:func:`headspex.devices.default_dtype`).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. In a worker pool ``"cuda"`` means the
            GPU Ray gives the worker.
        seed: seed of the tiny models' random weights.
        tiny_sizes: sizes of a ``tiny-*`` model (``n_layers``, ``d_model``…), see
            :func:`headspex.models.tiny_hf_model`; empty for real models.
    """

    source: str = "smollm2-135m"
    dtype: str | None = None
    device: str = "cpu"
    seed: int = 0
    tiny_sizes: dict[str, int] = field(default_factory=dict)

    @classmethod
    def tiny(cls, architecture: str = "llama", seed: int = 0, **sizes: int) -> ModelSpec:
        """A seeded tiny test model, e.g. ``ModelSpec.tiny("llama", n_layers=3)``."""
        return cls(source=f"tiny-{architecture}", seed=seed, tiny_sizes=dict(sizes))

    def resolved_dtype(self, device: str | None = None) -> str:
        """The dtype name the model is loaded in on ``device`` (default: this spec's device)."""
        from ..devices import default_dtype

        return self.dtype or default_dtype(device or self.device)

    def driver_copy(self) -> "ModelSpec":
        """The spec of the driver's copy beside a worker pool: on the CPU (it only tokenizes, names
        components and computes mask gradients) but in the workers' dtype, so its weights, and the
        fingerprint a run records, are the ones the workers evaluate (bf16 when they run on GPUs)."""
        return replace(self, device="cpu", dtype=self.resolved_dtype())

    def load(self, device: str | None = None) -> Any:
        """Load the model (a TransformerBridge) on ``device`` (default: this spec's device)."""
        from ..devices import resolve_device
        from ..models import TINY_ARCHITECTURES, load_model, tiny_model

        where = resolve_device(device or self.device)
        dtype = self.resolved_dtype(where)
        if self.source in TINY_ARCHITECTURES and self.tiny_sizes:
            import torch

            model = tiny_model(self.source.removeprefix("tiny-"), seed=self.seed, dtype=getattr(torch, dtype),
                               **self.tiny_sizes)
            return model.to(where)
        if self.tiny_sizes:
            raise SpecError(f"tiny_sizes only apply to {TINY_ARCHITECTURES}; got model '{self.source}'")
        return load_model(self.source, dtype=dtype, device=where, seed=self.seed)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (provenance)."""
        return {"source": self.source, "dtype": self.dtype, "device": self.device, "seed": self.seed,
                "tiny_sizes": dict(self.tiny_sizes)}


@dataclass(frozen=True)
class TaskSpec:
    """How a worker builds its task from the model's tokenizer.

    Attributes:
        kind: ``"mmlu"`` (:class:`~headspex.tasks.MMLUTask`), ``"induction"``
            (:class:`~headspex.tasks.InductionTask`) or ``"factory"``: ``options["factory"]``
            names an importable ``"module:function"`` called as ``function(tokenizer, **rest)``.
        options: keyword arguments of that constructor, without the tokenizer (e.g.
            ``subject``, ``source``, ``n_shots``, ``n_reference``, ``n_attribution``, ``seed``,
            ``scoring``). Data paths must exist on every node.
    """

    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def mmlu(cls, subject: str, **options: Any) -> TaskSpec:
        """An MMLU subject; ``options`` as for :class:`~headspex.tasks.MMLUTask`."""
        return cls("mmlu", {"subject": subject, **options})

    @classmethod
    def induction(cls, **options: Any) -> TaskSpec:
        """Induction prompts; ``options`` as for :class:`~headspex.tasks.InductionTask`."""
        return cls("induction", dict(options))

    @classmethod
    def factory(cls, function: str, **options: Any) -> TaskSpec:
        """A task made by an importable ``"module:function"(tokenizer, **options)``."""
        return cls("factory", {"factory": function, **options})

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise SpecError(f"unknown task kind '{self.kind}'; use one of {TASK_KINDS}")

    def build(self, tokenizer: Any) -> Any:
        """The task object for ``tokenizer``."""
        options = dict(self.options)
        if self.kind == "mmlu":
            from ..tasks import MMLUTask

            return MMLUTask(tokenizer, **options)
        if self.kind == "induction":
            from ..tasks import InductionTask

            return InductionTask(tokenizer, **options)
        target = str(options.pop("factory", ""))
        module_name, _, attribute = target.partition(":")
        if not module_name or not attribute:
            raise SpecError(f"a factory task needs options['factory'] = 'module:function'; got '{target}'")
        try:
            function = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise SpecError(f"cannot import task factory '{target}': {error}") from None
        return function(tokenizer, **options)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (provenance)."""
        return {"kind": self.kind, "options": dict(self.options)}


@dataclass(frozen=True)
class GameSpec:
    """Everything an :class:`~headspex.game.AblationGame` is built from, as plain data.

    ``players`` are component names (``"L3H5"``, ``"L3.mlp"``, ``"L3N512"``…); the other
    fields are the game's keyword arguments of the same names.
    """

    model: ModelSpec
    task: TaskSpec
    players: tuple[str, ...]
    mode: str = "zero"
    split: str = "attribution"
    metric: str | None = None
    reference_split: str | None = "reference"
    n_questions: int | None = None
    n_reference: int | None = None
    memory_budget_mb: float | None = None
    upstream_cache: bool = True
    fused_attention: bool = True
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # further AblationGame keywords

    def __post_init__(self) -> None:
        if isinstance(self.players, str) or not isinstance(self.players, Sequence):
            raise SpecError("players must be a sequence of component names, e.g. ['L3H0', 'L3H1']")
        object.__setattr__(self, "players", tuple(str(p) for p in self.players))
        if not self.players:
            raise SpecError("a game needs at least one player")

    def with_players(self, players: Sequence[Any]) -> GameSpec:
        """The same game over other players (component objects or names)."""
        return replace(self, players=tuple(str(p) for p in players))

    def key(self) -> str:
        """Stable identity of the game (hash of every field)."""
        text = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """JSON-able description (provenance)."""
        data = asdict(self)
        data["model"] = self.model.describe()
        data["task"] = self.task.describe()
        data["players"] = list(self.players)
        return data

    def game_options(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~headspex.game.AblationGame` besides model, task, players."""
        return {
            "mode": self.mode, "split": self.split, "metric": self.metric, "reference_split": self.reference_split,
            "n_questions": self.n_questions, "n_reference": self.n_reference,
            "memory_budget_mb": self.memory_budget_mb, "upstream_cache": self.upstream_cache,
            "fused_attention": self.fused_attention, "seed": self.seed, **self.extra,
        }

    def build(self, model: Any | None = None, task: Any | None = None, progress: bool = False) -> Any:
        """The AblationGame (loads the model and builds the task unless they are given)."""
        from ..game import AblationGame

        model = self.model.load() if model is None else model
        task = self.task.build(model.tokenizer) if task is None else task
        return AblationGame(model, task, list(self.players), progress=progress, **self.game_options())

