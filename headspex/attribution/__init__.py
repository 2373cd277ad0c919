"""Head attribution end to end: run the interaction engine on ablation games, per scope.

A *unit* is one game: a fixed ordered set of players (heads). Three scopes build units:

``"layer"``
    one unit per layer, players = the heads of that layer (SmolLM2: 9 heads, 512 masks).
``"group"``
    one unit per block of ``group_size`` consecutive layers (the ProxySPEX paper's setting).
``"all"``
    a single unit whose players are every head of the chosen layers.

For each unit :func:`attribute_units` fits an estimator (ProxySPEX, or the exact transform
over all ``2^n`` masks), then computes single-head values (Banzhaf, Shapley), bootstrap
intervals over questions and over masks, and, when asked, how far ProxySPEX at a smaller
budget is from the exact answer. Everything lands in a *run directory*::

    run_dir/
      run.json                      config, model, task, split, unit plan (written first)
      units/<unit>/unit.json        summary of one finished unit (written when it finishes)
      units/<unit>/engine/          EngineResult.save (result.json + arrays.npz)
      units/<unit>/bootstrap_{questions,masks}.npz   bootstrap replicates of the coefficients
      cache/<unit>/batch_*.npz      every evaluated mask with its per-question values
      game_cache/<unit>/            the AblationGame's own logit cache (only with use_game_cache)


A killed run resumes: finished units are loaded from ``unit.json``, and a half-done unit
re-reads its evaluated masks from ``cache/<unit>`` (the :class:`~headspex.engine.MaskStore`
the runner hands to the engine's fit) so none is sent to the model again.

Modules: :mod:`.config` (configuration, units), :mod:`.rundir` (result files),
:mod:`.runner` (fitting units and runs), :mod:`.provenance` (what a run was computed from, checksums). Mask convention (as everywhere in headspex):
``bool[m, n]``, True = head kept.
"""

from __future__ import annotations

from .config import FAST_FIT, MAX_EXACT_METHOD_PLAYERS, AttributionConfig, AttributionError, Unit, plan_units
from .rundir import RUN_FORMAT, UNIT_FORMAT, AttributionRun, CorruptFileError, UnitResult, read_versioned_json
from .runner import (
    GameFactory,
    GameLike,
    attribute,
    attribute_unit,
    attribute_units,
    exact_comparison,
    model_game_factory,
    model_meta,
    model_units,
    will_compare,
)
from ..engine.values import banzhaf_matrix, bootstrap_coefficients, percentile_interval, shapley_matrix

__all__ = [
    "FAST_FIT",
    "MAX_EXACT_METHOD_PLAYERS",
    "RUN_FORMAT",
    "UNIT_FORMAT",
    "AttributionConfig",
    "AttributionError",
    "AttributionRun",
    "CorruptFileError",
    "GameFactory",
    "GameLike",
    "Unit",
    "UnitResult",
    "attribute",
    "attribute_unit",
    "attribute_units",
    "banzhaf_matrix",
    "bootstrap_coefficients",
    "exact_comparison",
    "model_game_factory",
    "model_meta",
    "model_units",
    "percentile_interval",
    "plan_units",
    "read_versioned_json",
    "shapley_matrix",
    "will_compare",
]
