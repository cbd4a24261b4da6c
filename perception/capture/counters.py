"""Frame accounting shared by the capture thread and the worker.

Invariant, checked by tests and printed at exit: read == processed + sum(dropped).
"""

from __future__ import annotations

import threading
from collections import Counter

DROP_OVERWRITTEN = "overwritten"  # a newer live frame replaced it before the worker took it
DROP_STALE = "stale"  # older than max_age_ms when the worker took it
DROP_SHUTDOWN = "shutdown"  # still queued when the node stopped
DROP_ERROR = "error"  # the pipeline failed on it (reported on the status topic)


class FrameCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.read = 0
        self.processed = 0
        self.dropped: Counter[str] = Counter()

    def add_read(self) -> None:
        with self._lock:
            self.read += 1

    def add_read_dropped(self, cause: str) -> None:
        """A frame read and dropped at once: both counts change together, so the balance never breaks."""
        with self._lock:
            self.read += 1
            self.dropped[cause] += 1

    def add_processed(self) -> None:
        with self._lock:
            self.processed += 1

    def add_dropped(self, cause: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self.dropped[cause] += n

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"read": self.read, "processed": self.processed, "dropped": dict(self.dropped)}

    @property
    def balanced(self) -> bool:
        with self._lock:
            return self.read == self.processed + sum(self.dropped.values())

    def summary_line(self) -> str:
        snap = self.snapshot()
        dropped: dict[str, int] = snap["dropped"]  # type: ignore[assignment]
        causes = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) or "none"
        return (f"read {snap['read']} = processed {snap['processed']} + dropped {sum(dropped.values())} "
                f"({causes})")
