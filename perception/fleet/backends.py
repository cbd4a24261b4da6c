"""Where drives run: Ray actors (a cluster or this machine), or local processes without Ray.

Plain Ray actors rather than ray.data map_batches: a drive is one ordered stream that must stay
on one worker (the tracker is stateful), so the unit of work is a whole drive, not a batch of
rows. Each actor (or process) is a DriveWorker holding one engine; fleet.pool hands it drives.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from perception.core.errors import MissingDependencyError
from perception.fleet.drives import Drive
from perception.fleet.pool import Finished
from perception.fleet.replay import DriveWorker, ReplaySettings

RAY_EXTRA = 'pip install "perception-node[fleet]" (or use --backend processes)'
# what every worker process needs, imported once in the fork server
_PRELOAD = ["perception.fleet.replay", "perception.fleet.scoring", "perception.runtime.node",
            "perception.runtime.parts", "onnxruntime"]


@dataclass(frozen=True)
class Resources:
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    address: str | None = None  # ray://head:10001, "auto", or None for a local Ray
    object_store_mib: int = 256  # a local Ray only


class RayWorkers:
    """One Ray actor per worker, sized by --cpus-per-worker / --gpus-per-worker."""

    def __init__(self, settings: ReplaySettings, resources: Resources) -> None:
        try:
            import ray
        except ImportError as exc:
            raise MissingDependencyError("ray", "perception fleet run", RAY_EXTRA) from exc
        self._ray = ray
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            if resources.address:
                ray.init(address=resources.address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(1, int(resources.workers * resources.cpus_per_worker + 0.999)),
                         object_store_memory=resources.object_store_mib << 20, include_dashboard=False,
                         log_to_driver=False)
        self._actor = ray.remote(DriveWorker).options(num_cpus=resources.cpus_per_worker,
                                                      num_gpus=resources.gpus_per_worker)
        self._settings = settings
        self._pending: dict[Any, Any] = {}  # object ref -> the actor computing it
        self._actors: list[Any] = []

    def start(self) -> Any:
        actor = self._actor.remote(self._settings)
        self._actors.append(actor)
        return actor

    def submit(self, worker: Any, drive: Drive) -> None:
        self._pending[worker.replay.remote(drive)] = worker

    def pid(self, worker: Any) -> int | None:
        return None  # known only inside the actor; each result says it

    def next_finished(self) -> Finished[Any]:
        ready, _ = self._ray.wait(list(self._pending), num_returns=1)
        actor = self._pending.pop(ready[0])
        try:
            return Finished(actor, self._ray.get(ready[0]))
        except self._ray.exceptions.RayError as exc:  # the actor died (replay itself never raises)
            return Finished(actor, None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def discard(self, worker: Any) -> None:
        self._actors.remove(worker)
        self._ray.kill(worker)

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors.clear()
        if self._started_ray:
            self._ray.shutdown()


@dataclass(eq=False)
class _Process:
    process: BaseProcess
    conn: Connection


def _serve(conn: Connection, settings: ReplaySettings, environ: dict[str, str]) -> None:
    """A worker process: drives in, results out, until told to stop (None)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    os.environ.clear()  # the parent's environment now (source plugins, cache folder), not the fork server's
    os.environ.update(environ)
    worker = DriveWorker(settings)
    try:
        while (drive := conn.recv()) is not None:
            conn.send(worker.replay(drive))
    finally:
        worker.close()


class ProcessWorkers:
    """The fallback: one process per worker on this machine (no cluster, no GPU placement).

    Forked from a fork server that imported the node once: a worker starts from a clean,
    single-threaded process whatever threads the parent runs, in milliseconds rather than the
    seconds a spawned interpreter takes to import numpy, OpenCV and ONNX Runtime (a replaced
    worker costs no more than a new process).
    """

    def __init__(self, settings: ReplaySettings) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)
        self._settings = settings
        self._busy: list[_Process] = []
        self._all: list[_Process] = []

    def start(self) -> _Process:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, self._settings, dict(os.environ)), daemon=True,
                                        name="perception-fleet-worker")
        process.start()
        child.close()
        worker = _Process(process, parent)
        self._all.append(worker)
        return worker

    def submit(self, worker: _Process, drive: Drive) -> None:
        worker.conn.send(drive)
        self._busy.append(worker)

    def pid(self, worker: _Process) -> int | None:
        return worker.process.pid

    def next_finished(self) -> Finished[_Process]:
        ready = wait([w.conn for w in self._busy])  # a dead worker's pipe is readable too (end of file)
        worker = next(w for w in self._busy if w.conn in ready)
        self._busy.remove(worker)
        try:
            return Finished(worker, worker.conn.recv())
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            return Finished(worker, None, f"worker process {worker.process.pid} ended with exit code "
                                          f"{worker.process.exitcode}")

    def discard(self, worker: _Process) -> None:
        self._all.remove(worker)
        _stop(worker, hard=True)

    def close(self) -> None:
        for worker in self._all:  # idle ones finish cleanly; busy ones (an interrupt) are stopped
            _stop(worker, hard=worker in self._busy)
        self._all.clear()
        self._busy.clear()


def _stop(worker: _Process, *, hard: bool) -> None:
    if not hard:
        try:
            worker.conn.send(None)
        except OSError:
            hard = True
    if hard:
        worker.process.terminate()
    worker.process.join(timeout=10)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    worker.conn.close()


BACKENDS = {"ray": RayWorkers, "processes": ProcessWorkers}
