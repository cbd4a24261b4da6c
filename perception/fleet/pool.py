"""Hand drives to workers one at a time; a drive whose worker died goes to a fresh worker.

The unit of work is a whole drive (the tracker is stateful, so a drive stays on one worker);
each worker takes the next drive when it is free, and results come back as drives end. A worker
that dies (killed, out of memory, a crash in native code) is replaced; its drive is tried again
on the new one, up to MAX_ATTEMPTS times, then recorded as failed with the cause.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from perception.fleet.drives import Drive
from perception.fleet.replay import failed

MAX_ATTEMPTS = 2

log = logging.getLogger("perception.fleet")

W = TypeVar("W")


@dataclass(frozen=True)
class Finished(Generic[W]):
    worker: W
    result: dict[str, Any] | None  # None: the worker died
    death: str = ""  # why, when it died


class Workers(Protocol[W]):
    """A backend's workers: Ray actors or local processes."""

    def start(self) -> W: ...

    def submit(self, worker: W, drive: Drive) -> None: ...

    def pid(self, worker: W) -> int | None: ...

    def next_finished(self) -> Finished[W]: ...

    def discard(self, worker: W) -> None: ...

    def close(self) -> None: ...


def run_pool(workers: Workers[W], drives: list[Drive], count: int, out: Path) -> Iterator[dict[str, Any]]:
    """Results as drives end, every drive exactly once (done, or failed with its error)."""
    queue: deque[Drive] = deque(drives)
    attempts: dict[str, int] = {}
    busy: dict[int, tuple[W, Drive]] = {}
    idle: list[W] = []
    try:
        idle = [workers.start() for _ in range(min(count, len(drives)))]
        while queue or busy:
            while idle and queue:
                worker, drive = idle.pop(), queue.popleft()
                attempts[drive.name] = attempts.get(drive.name, 0) + 1
                workers.submit(worker, drive)
                busy[id(worker)] = (worker, drive)
                log.info("drive %s started on worker %s (attempt %d)", drive.name, workers.pid(worker),
                         attempts[drive.name])
            finished = workers.next_finished()
            worker, drive = busy.pop(id(finished.worker))
            if finished.result is not None:
                idle.append(worker)
                yield finished.result
                continue
            workers.discard(worker)
            if attempts[drive.name] < MAX_ATTEMPTS:
                log.warning("worker died on drive %s (%s); trying it again on a new worker", drive.name,
                            finished.death)
                queue.appendleft(drive)
            else:
                yield failed(drive, out, f"its worker died {attempts[drive.name]} times, last: {finished.death}")
            if queue:
                idle.append(workers.start())
    finally:
        workers.close()
