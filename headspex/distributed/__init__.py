"""Distributed evaluation of ablation games on Ray (``pip install 'headspex[ray]'``).

A :class:`WorkerPool` starts workers that each load one replica of a model (one per GPU, or
one per group of CPU cores) from a picklable :class:`ModelSpec`. A :class:`DistributedGame`
built from a :class:`GameSpec` (model, task, players, mode, metric…) hands chunks of masks
to the pool and merges the results into one mask store; it is an ordinary value function
(``masks bool[m, n] -> values float[m]``), so the engine, attribution and pruning use it as
they use an in-process :class:`~headspex.game.AblationGame`, and its values are identical::

    from headspex.distributed import GameSpec, ModelSpec, TaskSpec, WorkerPool, DistributedGame

    model = ModelSpec("smollm2-135m")
    with WorkerPool(model, n_workers=2, threads_per_worker=1) as pool:
        spec = GameSpec(model, TaskSpec.mmlu("marketing", n_attribution=20), players=["L20H0", "L20H1"])
        game = DistributedGame(pool, spec, store_dir="runs/store")
        values = game(masks)

Workers that die are replaced and their chunks retried; a driver restarted on the same
``store_dir`` evaluates only the masks the store lacks. Importing this package imports
neither Ray nor torch.
"""

from __future__ import annotations

from .pool import DistributedError, Progress, WorkerPool, auto_chunk_masks, connect
from .remote_game import DistributedGame, attribution_game_factory, distributed_game_factory, prune_game_builder
from .spec import GameSpec, ModelSpec, SpecError, TaskSpec

__all__ = [
    "DistributedError", "DistributedGame", "GameSpec", "ModelSpec", "Progress", "SpecError", "TaskSpec",
    "WorkerPool", "attribution_game_factory", "auto_chunk_masks", "connect", "distributed_game_factory",
    "prune_game_builder",
]
