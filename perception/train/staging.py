"""Scene rendering for training: worker processes write straight into shared staging slots.

Workers render `training_sample(seed)` into a file-backed array (np.memmap, MAP_SHARED) and
send back only the slot number, so no image data crosses a queue and the trainer's own process
does nothing per scene but one bulk copy of the finished slots. Slots are recycled
only after the trainer took their scene, so memory is bounded by the slot count. No torch
here: spawned workers import this module and the generator, nothing heavier.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.queues import drain
from perception.synth.scene import single_threaded, training_sample

# a scene waiting in staging costs H*W*5 bytes (RGB, class, instance): 1024 slots at 320x192 ~ 300 MB
DEFAULT_SLOTS = 1024


@dataclass(frozen=True)
class Scenes:
    """Finished scenes, in the order they finished."""

    rgb: np.ndarray  # (n, H, W, 3) uint8
    semantic: np.ndarray  # (n, H, W) uint8, 255 void
    instances: np.ndarray  # (n, H, W) uint16, 0 = not a thing


def _arrays(folder: Path, slots: int, height: int, width: int, mode: str) -> tuple[np.ndarray, ...]:
    # np.memmap's mode literal type is narrower than str; the modes used here are "w+" and "r+"
    shapes: list[tuple[str, Any, tuple[int, ...]]] = [
        ("rgb", np.uint8, (slots, height, width, 3)), ("semantic", np.uint8, (slots, height, width)),
        ("instances", np.uint16, (slots, height, width))]
    return tuple(np.memmap(folder / name, dtype=dtype, mode=mode, shape=shape)  # type: ignore[call-overload]
                 for name, dtype, shape in shapes)


def _worker(folder: str, slots: int, height: int, width: int, tasks: Any, done: Any) -> None:
    single_threaded()
    os.nice(5)  # the training loop's own process comes first when cores are short
    rgb, semantic, instances = _arrays(Path(folder), slots, height, width, "r+")
    while (task := tasks.get()) is not None:
        slot, seed = task
        rgb[slot], semantic[slot], instances[slot] = training_sample(seed)
        done.put(slot)


class RenderPool:
    """Renders `seeds` with `workers` processes (or a thread, for workers <= 1, in seed order).

    poll() returns the scenes finished since the last call and hands their slots back to the
    workers. error holds a worker failure; the trainer re-raises it.
    """

    def __init__(self, seeds: list[int], workers: int, height: int, width: int, slots: int = DEFAULT_SLOTS) -> None:
        self.seeds, self.workers, self.height, self.width = seeds, workers, height, width
        self.slots = max(1, min(slots, len(seeds)))
        self.error: BaseException | None = None
        self._next = 0  # next seed position to hand out
        self._procs: list[Any] = []
        self._folder: Path | None = None
        self._thread_out: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RenderPool:
        if self.workers <= 1:
            self._thread = threading.Thread(target=self._render_in_thread, name="scene-render", daemon=True)
            self._thread.start()
            return self
        self._folder = Path(tempfile.mkdtemp(prefix="perception-scenes-"))
        self._staging = _arrays(self._folder, self.slots, self.height, self.width, "w+")
        # spawn: the trainer holds CUDA state and threads, which fork would copy unsafely
        ctx = multiprocessing.get_context("spawn")
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"  # read by the workers' numpy/OpenCV at import: one thread each
        self._tasks, self._done = ctx.Queue(), ctx.Queue()
        for slot in range(self.slots):
            self._hand_out(slot)
        for _ in range(self.workers):
            proc = ctx.Process(target=_worker, name="scene-render", daemon=True,
                               args=(str(self._folder), self.slots, self.height, self.width, self._tasks, self._done))
            proc.start()
            self._procs.append(proc)
        return self

    def _hand_out(self, slot: int) -> None:
        if self._next < len(self.seeds):
            self._tasks.put((slot, self.seeds[self._next]))
            self._next += 1
            if self._next == len(self.seeds):
                for _ in range(self.workers):
                    self._tasks.put(None)

    def _render_in_thread(self) -> None:
        try:
            for seed in self.seeds:
                if self._stop.is_set():
                    return
                self._thread_out.append(training_sample(seed))
        except BaseException as exc:  # surfaced through poll()
            self.error = exc

    def poll(self) -> Scenes | None:
        if self._thread is not None:
            items = []
            while self._thread_out:
                items.append(self._thread_out.popleft())
            if not items:
                return None
            return Scenes(*(np.stack([item[k] for item in items]) for k in range(3)))
        dead = [p for p in self._procs if p.exitcode not in (None, 0)]
        if dead:
            self.error = RuntimeError(f"scene worker {dead[0].pid} exited with code {dead[0].exitcode} "
                                      "(its traceback is above)")
        finished = drain(self._done)
        if not finished:
            return None
        scenes = Scenes(*(a[finished] for a in self._staging))  # copies: the slots can be reused now
        for slot in finished:
            self._hand_out(slot)
        return scenes

    def stop(self) -> None:
        self._stop.set()
        if self._procs:
            self._tasks.cancel_join_thread()  # unsent tasks must not hold up the trainer's exit
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            proc.join(timeout=5)
        self._procs.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
