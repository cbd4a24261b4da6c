"""Where drives run: Ray actors (a cluster or this machine), or local processes when Ray is not installed.

Plain Ray actors rather than ray.data map_batches: a drive is one ordered stream that must stay
on one worker (the tracker is stateful), so the unit of work is a whole drive, not a batch of
rows; an actor pool hands the next drive to whichever actor is free and returns results as they end.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from perception.core.errors import MissingDependencyError
from perception.fleet.drives import Drive
from perception.fleet.replay import ReplaySettings, replay


@dataclass(frozen=True)
class Resources:
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    address: str | None = None  # ray://head:10001, "auto", or None for a local Ray
    object_store_mib: int = 256  # a local Ray only


def run_ray(drives: list[Drive], settings: ReplaySettings, resources: Resources) -> Iterator[dict[str, Any]]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise MissingDependencyError("ray", "perception fleet run",
                                     'pip install "perception-node[fleet]" (or use --backend processes)') from exc
    if not ray.is_initialized():
        if resources.address:
            ray.init(address=resources.address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, int(resources.workers * resources.cpus_per_worker + 0.999)),
                     object_store_memory=resources.object_store_mib << 20, include_dashboard=False,
                     log_to_driver=False)

    @ray.remote
    class DriveWorker:
        def replay(self, drive: Drive) -> dict[str, Any]:
            return replay(drive, settings)

    worker = DriveWorker.options(num_cpus=resources.cpus_per_worker,  # type: ignore[attr-defined]
                                 num_gpus=resources.gpus_per_worker)
    pool = ActorPool([worker.remote() for _ in range(resources.workers)])
    yield from pool.map_unordered(lambda actor, drive: actor.replay.remote(drive), drives)


def run_processes(drives: list[Drive], settings: ReplaySettings, resources: Resources) -> Iterator[dict[str, Any]]:
    """The fallback: one process per worker on this machine (no cluster, no GPU placement)."""
    with ProcessPoolExecutor(max_workers=resources.workers) as pool:
        futures = [pool.submit(replay, drive, settings) for drive in drives]
        for future in as_completed(futures):
            yield future.result()


BACKENDS = {"ray": run_ray, "processes": run_processes}
