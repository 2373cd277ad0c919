"""A pool of Ray workers, one model replica each, that evaluates chunks of masks.

The pool hands chunks to workers as they become free (two in flight per worker, so a
worker never waits for the driver), and survives workers that die: a chunk whose worker
died is put back at the head of the queue and goes to the next free live worker; Ray
restarts the dead worker (``max_restarts``) and the pool takes it back once it answers.
A chunk's result is delivered exactly once, so no mask is lost or counted twice.

Ray is an optional dependency (``pip install headspex[ray]``); it is imported on first use.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import HeadspexError
from .spec import GameSpec, ModelSpec

#: Chunks sent ahead to one worker (the second hides the driver's round trip).
IN_FLIGHT_PER_WORKER = 2
#: How often a restarting worker is asked whether it is back (seconds).
PROBE_INTERVAL_S = 0.5


class DistributedError(HeadspexError):
    """A cluster, worker or chunk problem, named in one line."""


@dataclass(frozen=True)
class Progress:
    """A snapshot of one evaluation call, given to progress callbacks."""

    masks_done: int
    masks_total: int
    rows_done: int
    seconds: float
    workers_alive: int
    workers_total: int
    retries: int

    @property
    def rows_per_s(self) -> float:
        return self.rows_done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """``"12/40 masks, 35.1 rows/s, workers 2/2 alive, 1 retried"``."""
        text = (f"{self.masks_done}/{self.masks_total} masks, {self.rows_per_s:.1f} rows/s, "
                f"workers {self.workers_alive}/{self.workers_total} alive")
        return text + (f", {self.retries} retried" if self.retries else "")


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DistributedError("distributed evaluation needs Ray: pip install 'headspex[ray]'") from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> dict[str, float]:
    """Connect this process to Ray and return the cluster's resources.

    Args:
        address: ``None`` starts a local Ray on this machine; ``"auto"`` joins the cluster
            started here with ``ray start``; ``"host:port"`` or ``"ray://host:port"`` joins
            that cluster. A process already connected keeps its connection.
        num_cpus: CPUs a local Ray may use (default: all).

    Returns:
        ``{"CPU": ..., "GPU": ...}``: the cluster's total resources.
    """
    ray = import_ray()
    if address not in (None, "auto"):
        _check_reachable(address)
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        try:
            if address is None:
                ray.init(num_cpus=num_cpus, **options)
            else:
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            hint = "start one with 'ray start --head'" if address == "auto" else "check the address"
            raise DistributedError(f"cannot join the Ray cluster at address={address!r} ({first_line}); {hint}") from None
    return dict(ray.cluster_resources())


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse an address nothing answers at, before Ray's own (long) connection retries."""
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"Ray address '{address}' is not host:port, ray://host:port or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except OSError as error:
        raise DistributedError(
            f"Ray address {address} is unreachable ({error.strerror or error}); start the cluster there "
            "('ray start --head') or check the host and port"
        ) from None


class WorkerPool:
    """Ray workers, each holding one replica of one model.

    Args:
        model: the model every worker loads.
        n_workers: number of replicas.
        threads_per_worker: torch threads (and Ray CPUs) per worker; default 1.
        gpus_per_worker: GPUs per worker when the model's device is ``cuda`` (default 1).
        address: Ray cluster (see :func:`connect`); ``None`` = a local Ray.
        max_restarts: times Ray restarts a worker that died.
        max_chunk_attempts: workers a chunk may be tried on before the call fails.
        load_timeout_s: how long model loading may take before the pool gives up.
    """

    def __init__(
        self,
        model: ModelSpec,
        n_workers: int = 1,
        *,
        threads_per_worker: int | None = None,
        gpus_per_worker: float | None = None,
        address: str | None = None,
        max_restarts: int = 3,
        max_chunk_attempts: int = 3,
        load_timeout_s: float = 900.0,
    ) -> None:
        if n_workers < 1:
            raise DistributedError(f"a pool needs at least one worker; got n_workers={n_workers}")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise DistributedError(f"threads_per_worker must be >= 1; got {threads_per_worker}")
        on_gpu = model.device.startswith("cuda")
        if on_gpu and model.device != "cuda":
            raise DistributedError(f"a pool gives each worker its own GPU: use device 'cuda', not '{model.device}'")
        if model.device not in ("cpu", "cuda"):
            raise DistributedError(f"unknown device '{model.device}' for a pool; use cpu or cuda")
        self.model = model
        self.n_workers = n_workers
        self.threads = threads_per_worker or 1
        self.gpus = (gpus_per_worker if gpus_per_worker is not None else 1.0) if on_gpu else 0.0
        self.address = address
        self.max_restarts = max_restarts
        self.max_chunk_attempts = max_chunk_attempts
        self.load_timeout_s = load_timeout_s
        self.actors: list[Any] = []
        self.names: list[str] = []
        self.alive: list[bool] = []
        self.recovering: dict[int, float] = {}  # worker Ray is restarting -> when to ask it next
        self.identities: list[dict[str, Any]] = []
        self.shape: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> WorkerPool:
        """Connect to Ray, start the workers and load the model in each (idempotent)."""
        if self.actors:
            return self
        ray = import_ray()
        resources = connect(self.address, num_cpus=None)
        self._check_resources(ray, resources)
        from .worker import GameWorker

        actor_class = ray.remote(GameWorker)
        for index in range(self.n_workers):
            name = f"worker-{index}"
            actor = actor_class.options(
                num_cpus=self.threads, num_gpus=self.gpus, max_restarts=self.max_restarts, max_task_retries=0,
            ).remote(name, self.model, self.threads)
            self.actors.append(actor)
            self.names.append(name)
            self.alive.append(True)
        try:
            self._load_all(ray)
        except BaseException:
            self.close()
            raise
        return self

    def _check_resources(self, ray: Any, total: dict[str, float]) -> None:
        # Ray would queue actors that do not fit forever: refuse them up front instead.
        free = ray.available_resources()
        for kind, each in (("CPU", float(self.threads)), ("GPU", self.gpus)):
            need = each * self.n_workers
            if need == 0:
                continue
            if need > total.get(kind, 0.0):
                raise DistributedError(
                    f"{self.n_workers} workers x {each:g} {kind} need {need:g} {kind}s but the Ray cluster has "
                    f"{total.get(kind, 0.0):g}; use fewer workers" + (" or threads" if kind == "CPU" else "")
                )
            if need > free.get(kind, 0.0):
                raise DistributedError(
                    f"{self.n_workers} workers x {each:g} {kind} need {need:g} {kind}s but only "
                    f"{free.get(kind, 0.0):g} are free (others are held by running actors); close other pools"
                )

    def _load_all(self, ray: Any) -> None:
        refs = [actor.load.remote() for actor in self.actors]
        ready, waiting = ray.wait(refs, num_returns=len(refs), timeout=self.load_timeout_s)
        if waiting:
            late = [self.names[refs.index(ref)] for ref in waiting]
            raise DistributedError(
                f"{', '.join(late)} did not load model '{self.model.source}' within {self.load_timeout_s:.0f} s"
            )
        for name, ref in zip(self.names, refs):
            try:
                report = ray.get(ref)
            except ray.exceptions.RayError as error:
                raise DistributedError(
                    f"{name} died while loading model '{self.model.source}': {_first_line(error)}"
                ) from None
            if not report["ok"]:
                raise DistributedError(
                    f"{name} (pid {report['pid']} on {report['host']}) could not load model "
                    f"'{self.model.source}': {report['error']}"
                )
            self.identities.append(report)
            self.shape = report["shape"]

    def close(self) -> None:
        """Stop every worker (the Ray connection stays)."""
        if not self.actors:
            return
        ray = import_ray()
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors, self.names, self.alive, self.identities = [], [], [], []
        self.recovering.clear()

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def workers_alive(self) -> int:
        return sum(self.alive)

    def worker_pids(self, timeout_s: float = 120.0) -> dict[str, int]:
        """``{worker name: process id}`` of the live workers, waiting for restarting ones."""
        return {name: int(identity["pid"]) for name, identity in self.worker_identities(timeout_s).items()}

    def busy_seconds(self) -> float:
        """Seconds the live workers have spent evaluating masks (since each one's last start)."""
        return sum(float(identity["busy_seconds"]) for identity in self.worker_identities().values())

    def worker_identities(self, timeout_s: float = 120.0) -> dict[str, dict[str, Any]]:
        """``{worker name: identity()}`` of the live workers, waiting for restarting ones."""
        ray = import_ray()
        deadline = time.perf_counter() + timeout_s
        pids: dict[str, dict[str, Any]] = {}
        for index in self._live_indices():
            while True:
                try:
                    pids[self.names[index]] = ray.get(self.actors[index].identity.remote())
                    self.recovering.pop(index, None)
                    break
                except ray.exceptions.ActorUnavailableError:
                    if time.perf_counter() > deadline:
                        raise DistributedError(f"{self.names[index]} did not come back within {timeout_s:.0f} s") from None
                    time.sleep(PROBE_INTERVAL_S)
                except ray.exceptions.RayError:
                    self.alive[index] = False
                    self.recovering.pop(index, None)
                    break
        return pids

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance: address, workers, threads, GPUs, model."""
        return {"address": self.address or "local", "n_workers": self.n_workers, "threads_per_worker": self.threads,
                "gpus_per_worker": self.gpus, "model": self.model.describe()}

    # ------------------------------------------------------------------ evaluation

    def prepare(self, spec: GameSpec, timeout_s: float = 120.0) -> dict[str, Any]:
        """Build ``spec``'s game on a live worker and return its description (worker.prepare)."""
        ray = import_ray()
        deadline = time.perf_counter() + timeout_s
        while self._live_indices():
            for index in self._live_indices():
                try:
                    return ray.get(self.actors[index].prepare.remote(spec))
                except ray.exceptions.RayTaskError as error:
                    raise DistributedError(f"{self.names[index]}: {_cause_line(error)}") from None
                except ray.exceptions.ActorUnavailableError:
                    continue  # restarting: try another one, or this one again shortly
                except ray.exceptions.RayError:
                    self.alive[index] = False
            if time.perf_counter() > deadline:
                break
            time.sleep(PROBE_INTERVAL_S)
        raise DistributedError(f"no live worker left to build the game on (model '{self.model.source}')")

    def run_chunks(
        self,
        spec: GameSpec,
        chunks: Sequence[np.ndarray],
        on_result: Callable[[int, np.ndarray], None],
        on_progress: Callable[[Progress], None] | None = None,
        rows_per_mask: int = 1,
    ) -> None:
        """Evaluate every chunk of masks once, on whichever workers are free.

        Args:
            spec: the game the masks are for.
            chunks: ``bool[m_i, n]`` arrays.
            on_result: called once per chunk, in completion order, with its index and
                ``float32[m_i, q_all, c]`` logits (merge them into the store there).
            on_progress: called after each chunk with a :class:`Progress`.
            rows_per_mask: model rows one mask costs (for rows/s).
        """
        ray = import_ray()
        if not self.actors:
            self.start()
        run = _ChunkRun(self, ray, spec, chunks, rows_per_mask)
        try:
            while run.pending or run.in_flight:
                run.dispatch()
                for ref in run.wait():
                    index = run.collect(ref)
                    if index is not None:
                        on_result(index, run.results.pop(index))
                        if on_progress is not None:
                            on_progress(run.progress())
        finally:
            run.cancel()

    def _live_indices(self) -> list[int]:
        return [i for i, ok in enumerate(self.alive) if ok]


class _ChunkRun:
    """State of one :meth:`WorkerPool.run_chunks` call: queue, in-flight chunks, retries."""

    def __init__(self, pool: WorkerPool, ray: Any, spec: GameSpec, chunks: Sequence[np.ndarray],
                 rows_per_mask: int) -> None:
        self.pool, self.ray, self.spec, self.chunks = pool, ray, spec, chunks
        self.pending: deque[int] = deque(range(len(chunks)))
        self.in_flight: dict[Any, tuple[int, int]] = {}  # task ref -> (worker, chunk)
        self.probes: dict[Any, int] = {}  # identity() ref of a restarting worker -> worker
        self.attempts = [0] * len(chunks)
        self.results: dict[int, np.ndarray] = {}
        self.masks_total = sum(len(chunk) for chunk in chunks)
        self.masks_done = 0
        self.rows_per_mask = rows_per_mask
        self.retries = 0
        self.started = time.perf_counter()
        self.last_error = ""

    def dispatch(self) -> None:
        """Send queued chunks to free live workers and probes to restarting ones."""
        recovering = self.pool.recovering
        now = time.perf_counter()
        for worker, due in list(recovering.items()):
            if due <= now and worker not in self.probes.values():
                self.probes[self.pool.actors[worker].identity.remote()] = worker
        busy = [worker for worker, _ in self.in_flight.values()]
        ready = [worker for worker in self.pool._live_indices() if worker not in recovering]
        # Breadth first: every free worker gets a chunk before any gets a second one in advance.
        for depth in range(IN_FLIGHT_PER_WORKER):
            for worker in ready:
                if self.pending and busy.count(worker) <= depth:
                    chunk = self.pending.popleft()
                    self.attempts[chunk] += 1
                    ref = self.pool.actors[worker].evaluate.remote(self.spec, self.chunks[chunk])
                    self.in_flight[ref] = (worker, chunk)
                    busy.append(worker)
        if self.pending and not self.in_flight and not recovering:
            raise DistributedError(
                f"all {self.pool.n_workers} workers of model '{self.pool.model.source}' died; last error: {self.last_error}"
            )

    def wait(self) -> list[Any]:
        """Refs that finished; wakes up every half second while a worker restarts."""
        refs = list(self.in_flight) + list(self.probes)
        timeout = PROBE_INTERVAL_S if self.pool.recovering else None
        if not refs:
            time.sleep(PROBE_INTERVAL_S)
            return []
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        return ready

    def collect(self, ref: Any) -> int | None:
        """Handle one finished ref; returns the chunk index whose result is now in ``results``."""
        if ref in self.probes:
            self._collect_probe(ref)
            return None
        worker, chunk = self.in_flight.pop(ref)
        try:
            logits = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:
            # The game itself failed (bad spec, out of memory inside torch...): no retry can help.
            raise DistributedError(f"{self.pool.names[worker]}: {_cause_line(error)}") from None
        except self.ray.exceptions.RayError as error:
            self._worker_lost(worker, chunk, error)
            return None
        self.results[chunk] = logits
        self.masks_done += len(self.chunks[chunk])
        return chunk

    def _worker_lost(self, worker: int, chunk: int, error: Exception) -> None:
        self.last_error = f"{self.pool.names[worker]}: {_first_line(error)}"
        if isinstance(error, self.ray.exceptions.ActorUnavailableError):
            self.attempts[chunk] -= 1  # sent to a worker that was restarting: never ran
        elif self.attempts[chunk] >= self.pool.max_chunk_attempts:
            raise DistributedError(
                f"a chunk of {len(self.chunks[chunk])} masks failed on {self.attempts[chunk]} workers; "
                f"last error: {self.last_error}"
            )
        self.retries += 1
        self.pending.appendleft(chunk)
        # Ray restarts the worker (max_restarts); it rejoins once it answers identity().
        self.pool.recovering.setdefault(worker, time.perf_counter())

    def _collect_probe(self, ref: Any) -> None:
        worker = self.probes.pop(ref)
        try:
            self.ray.get(ref)
        except self.ray.exceptions.ActorUnavailableError:
            self.pool.recovering[worker] = time.perf_counter() + PROBE_INTERVAL_S  # still restarting
            return
        except self.ray.exceptions.RayError as error:
            self.pool.alive[worker] = False  # out of restarts, or its node is gone
            self.last_error = f"{self.pool.names[worker]}: {_first_line(error)}"
        self.pool.recovering.pop(worker, None)

    def progress(self) -> Progress:
        return Progress(self.masks_done, self.masks_total, self.masks_done * self.rows_per_mask,
                        time.perf_counter() - self.started, self.pool.workers_alive - len(self.pool.recovering),
                        self.pool.n_workers, self.retries)

    def cancel(self) -> None:
        # An interrupted call leaves nothing queued on the workers for the next one.
        for ref in self.in_flight:
            try:
                self.ray.cancel(ref)
            except Exception:  # noqa: BLE001 - finished or not cancellable: its result is dropped
                pass


def auto_chunk_masks(n_masks: int, n_workers: int, preferred: int, largest: int = 512) -> int:
    """Masks per chunk: about four chunks per worker, so a worker slowed down (or lost) holds
    up a quarter of its share at most, and never more than the game's largest micro-batch
    (``preferred``), so a chunk is never split into an extra, ragged micro-batch."""
    balanced = math.ceil(n_masks / max(1, 4 * n_workers))
    return max(1, min(preferred, balanced, largest))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _cause_line(error: Any) -> str:
    cause = getattr(error, "cause", None)
    return _first_line(cause) if cause is not None else _first_line(error)
