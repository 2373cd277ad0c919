"""headspex: which components of a transformer work together on a task, measured by ablation.

The public API, exported lazily (PEP 562): ``import headspex as hs`` costs nothing, and
``import headspex.engine`` never pulls in torch. The flow of data::

    load_model ─┐                 ┌─ attribute() ── structure / report
                ├─ AblationGame ──┤   (masks bool[m, n] -> values float[m] -> ProxySPEX -> Interactions)
    MMLUTask ───┘  (heads/Players)└─ prune()  ── held-out evaluation

See ``docs/ARCHITECTURE.md`` for one paragraph per module.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: public name -> "module:attribute" (imported on first use)
_EXPORTS: dict[str, str] = {
    # errors and vocabulary
    "HeadspexError": "headspex.errors:HeadspexError",
    "AblationMode": "headspex.types:AblationMode",
    "Metric": "headspex.types:Metric",
    "Scope": "headspex.types:Scope",
    "Method": "headspex.types:Method",
    "Scoring": "headspex.types:Scoring",
    "Basis": "headspex.types:Basis",
    "hook_name": "headspex.hooks:hook_name",
    # models, components, hooks
    "load_model": "headspex.models:load_model",
    "tiny_model": "headspex.models:tiny_model",
    "heads": "headspex.components:heads",
    "neurons": "headspex.components:neurons",
    "layer_parts": "headspex.components:layer_parts",
    "Players": "headspex.components:Players",
    "ablate": "headspex.ablation:ablate",
    "encode_prompts": "headspex.ablation:encode_prompts",
    # tasks and games
    "MMLUTask": "headspex.tasks:MMLUTask",
    "InductionTask": "headspex.tasks:InductionTask",
    "AblationGame": "headspex.game:AblationGame",
    # engine
    "ProxySPEX": "headspex.engine:ProxySPEX",
    "LassoRegression": "headspex.engine:LassoRegression",
    "Exhaustive": "headspex.engine:Exhaustive",
    "Interactions": "headspex.engine:Interactions",
    "EngineResult": "headspex.engine:EngineResult",
    # pipelines
    "AttributionConfig": "headspex.attribution:AttributionConfig",
    "attribute": "headspex.attribution:attribute",
    "AttributionRun": "headspex.attribution:AttributionRun",
    "run_structure": "headspex.structure:run_structure",
    "write_report": "headspex.report:write_report",
    "PruneConfig": "headspex.pruning:PruneConfig",
    "prune": "headspex.pruning:prune",
    # distributed evaluation (Ray, optional) and devices
    "WorkerPool": "headspex.distributed:WorkerPool",
    "DistributedGame": "headspex.distributed:DistributedGame",
    "GameSpec": "headspex.distributed:GameSpec",
    "ModelSpec": "headspex.distributed:ModelSpec",
    "TaskSpec": "headspex.distributed:TaskSpec",
    "resolve_device": "headspex.devices:resolve_device",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'headspex' has no attribute {name!r}")
    module_name, attribute = target.split(":")
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
