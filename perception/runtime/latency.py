"""Sliding-window latency percentiles per stage and end to end (CLOCK_MONOTONIC ns).

Each stage's figure is the time from the previous stage's stamp to its own, so the
stages of a frame add up to its end-to-end latency (capture -> publish). `service` is
dequeue -> publish, the node's own time on a frame without the wait for the engine: in a
lossless (lock-step) replay frames queue by design, and end to end measures the queue.
Memory is fixed: one ring buffer of `window` frames.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from perception.core.frame import STAGES, Stage

PERCENTILES = (50, 90, 99)
END_TO_END = "end_to_end"
SERVICE = "service"


class LatencyBook:
    """Thread-safe: the worker adds, the stats publisher and the summary read."""

    def __init__(self, window: int = 300) -> None:
        self.window = window
        self._names = [s.value for s in STAGES[1:]] + [SERVICE, END_TO_END]
        self._ring = np.zeros((window, len(self._names)), np.int64)
        self._mono = np.zeros(window, np.int64)  # publish stamp of each row, for fps
        self._count = 0
        self._lock = threading.Lock()

    def add(self, stamps: Mapping[str, int]) -> None:
        """Record one published frame's stage stamps (must include capture and publish)."""
        row = np.zeros(len(self._names), np.int64)
        previous = stamps[Stage.CAPTURE.value]
        for i, stage in enumerate(STAGES[1:]):
            now = stamps.get(stage.value, previous)
            row[i] = now - previous
            previous = now
        publish = stamps[Stage.PUBLISH.value]
        row[-2] = publish - stamps.get(Stage.DEQUEUE.value, stamps[Stage.CAPTURE.value])
        row[-1] = publish - stamps[Stage.CAPTURE.value]
        with self._lock:
            slot = self._count % self.window
            self._ring[slot] = row
            self._mono[slot] = stamps[Stage.PUBLISH.value]
            self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def snapshot(self) -> dict[str, Any]:
        """Percentiles over the window: {"clock", "window_frames", "fps", "stages", "service", "end_to_end"}."""
        with self._lock:
            n = min(self._count, self.window)
            rows = self._ring[:n].copy()
            stamps = np.sort(self._mono[:n])
        table = {name: _summary(rows[:, i]) for i, name in enumerate(self._names)}
        fps = 0.0
        if n >= 2 and stamps[-1] > stamps[0]:
            fps = (n - 1) * 1e9 / float(stamps[-1] - stamps[0])
        return {
            "clock": "CLOCK_MONOTONIC",
            "window_frames": n,
            "fps": round(fps, 3),
            "stages": {name: table[name] for name in self._names[:-2]},
            SERVICE: table[SERVICE],
            END_TO_END: table[END_TO_END],
        }


def _summary(values: np.ndarray) -> dict[str, int]:
    if len(values) == 0:
        return {"p50_ns": 0, "p90_ns": 0, "p99_ns": 0, "max_ns": 0, "count": 0}
    p50, p90, p99 = np.percentile(values, PERCENTILES, method="nearest")
    return {"p50_ns": int(p50), "p90_ns": int(p90), "p99_ns": int(p99), "max_ns": int(values.max()),
            "count": len(values)}


def format_table(snapshot: Mapping[str, object]) -> str:
    """Human table of a snapshot, in milliseconds."""
    stages = dict(snapshot["stages"])  # type: ignore[call-overload]
    if SERVICE in snapshot:
        stages[SERVICE] = snapshot[SERVICE]
    stages[END_TO_END] = snapshot[END_TO_END]
    lines = [f"{'stage':<14}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"]
    for name, row in stages.items():
        lines.append(f"{name:<14}" + "".join(f"{row[k] / 1e6:>9.2f}" for k in ("p50_ns", "p90_ns", "p99_ns",
                                                                              "max_ns")))
    lines.append(f"window {snapshot['window_frames']} frames, {snapshot['fps']:.1f} fps, "
                 f"clock {snapshot['clock']}")
    return "\n".join(lines)
