"""Is the pipeline moving? Decides whether the frame loop may pet systemd's watchdog.

Progress is a frame leaving the inference stage (published, or dropped as stale or failed).
A pipeline with no progress is still alive when nothing waits for it (a silent camera is
reported as source_lost, not restarted); frames waiting with no progress mean a hang.
"""

from __future__ import annotations

from perception.ops.sample import NodeSample


class Liveness:
    def __init__(self) -> None:
        self._last_progress = -1

    def progressing(self, sample: NodeSample) -> bool:
        dropped = sample.counters.get("dropped", {})
        progress = sum(int(n) for n in (sample.counters.get("processed", 0), dropped.get("stale", 0),
                                        dropped.get("error", 0)))
        moved = progress != self._last_progress
        self._last_progress = progress
        return moved or sum(sample.queues.values()) == 0
