"""Command-line options for devices and workers, shared by ``headspex attribute`` and ``prune``.

``--device cpu|cuda|cuda:N|auto`` and ``--dtype`` pick where and how the model runs
(bf16 on accelerators, fp32 on the CPU unless asked); ``--memory-budget-mb`` is the
activation memory of one micro-batch per device. ``--workers N`` (local Ray) or
``--ray-address ADDR`` (a cluster) evaluate the games' masks on a pool of workers.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from .pool import DistributedError


@dataclass(frozen=True)
class RunOptions:
    """Where the model runs and whether masks go to Ray workers (see the module docstring)."""

    device: str = "cpu"
    dtype: str | None = None
    memory_budget_mb: float | None = None
    workers: int = 0
    threads_per_worker: int | None = None
    ray_address: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether games are evaluated by a Ray pool."""
        return self.workers > 0 or self.ray_address is not None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        """Read and check the options added by :func:`add_arguments`."""
        workers = int(getattr(args, "workers", 0) or 0)
        address = getattr(args, "ray_address", None)
        if workers < 0:
            raise DistributedError(f"--workers must be >= 0; got {workers}")
        if address is not None and workers == 0:
            workers = 1
        budget = getattr(args, "memory_budget_mb", None)
        if budget is not None and budget <= 0:
            raise DistributedError(f"--memory-budget-mb must be positive; got {budget}")
        return cls(device=getattr(args, "device", "cpu") or "cpu", dtype=getattr(args, "dtype", None),
                   memory_budget_mb=budget, workers=workers,
                   threads_per_worker=getattr(args, "threads_per_worker", None), ray_address=address)

    def model_spec(self, source: str, seed: int = 0) -> Any:
        """The :class:`~headspex.distributed.spec.ModelSpec` of ``source`` on these options' device.

        In a pool, ``auto`` means a GPU per worker when this machine sees one; elsewhere
        the device is resolved (and checked) here.
        """
        from ..devices import resolve_device
        from .spec import ModelSpec

        device = resolve_device(self.device)
        if self.distributed and device.startswith("cuda:"):
            raise DistributedError("with --workers/--ray-address each worker gets its own GPU: use --device cuda")
        return ModelSpec(source=source, dtype=self.dtype, device=device, seed=seed)

    def game_options(self) -> dict[str, Any]:
        """AblationGame keyword arguments these options set."""
        return {} if self.memory_budget_mb is None else {"memory_budget_mb": self.memory_budget_mb}

    def open_pool(self, model: Any) -> Any:
        """A started :class:`~headspex.distributed.pool.WorkerPool` for ``model`` (a ModelSpec)."""
        from .pool import WorkerPool

        return WorkerPool(model, self.workers, threads_per_worker=self.threads_per_worker,
                          address=self.ray_address).start()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--device --dtype --memory-budget-mb --workers --threads-per-worker --ray-address``."""
    group = parser.add_argument_group("devices and workers")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default %(default)s)")
    group.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                       help="model dtype (default: bfloat16 on a GPU, float32 on the CPU)")
    group.add_argument("--memory-budget-mb", type=float,
                       help="activation memory of one micro-batch per device (default: 32 on CPU, 2048 on GPU)")
    group.add_argument("--workers", type=int, default=0,
                       help="evaluate masks on N Ray workers, one model replica each (0 = in this process)")
    group.add_argument("--threads-per-worker", type=int, help="torch threads (Ray CPUs) per worker (default 1)")
    group.add_argument("--ray-address", help="join a Ray cluster: auto, host:port or ray://host:port (default: local)")


__all__ = ["RunOptions", "add_arguments"]
