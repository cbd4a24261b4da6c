"""Per-frame errors as at most one `error` status per interval, each saying how many frames it stands for.

A camera sending garbage, or a model that fails on some frames, must not flood the status topic
with one message per frame (30 a second per camera): the first error is published at once, the
ones that follow within the interval are counted, and the next status carries that count and
the latest error's text. At the end of a run the count still pending is published before
`stopped`, so the `errors` fields of a run's error statuses add up to its failed frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ERROR_STATUS_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ErrorReport:
    count: int  # errors since the previous report
    detail: str  # the latest one

    def text(self) -> str:
        more = self.count - 1
        return self.detail if not more else f"{self.detail} (and {more} more since the last error status)"


class ErrorRate:
    def __init__(self, clock: Callable[[], int], interval_s: float = ERROR_STATUS_INTERVAL_S) -> None:
        self._clock = clock
        self._interval_ns = int(interval_s * 1e9)
        self._last_ns: int | None = None
        self._pending = 0
        self._latest = ""

    def add(self, detail: str) -> ErrorReport | None:
        """Count one error; the report to publish now, or None while the last one is too recent."""
        self._pending += 1
        self._latest = detail
        return self.due()

    def due(self) -> ErrorReport | None:
        """The pending count, once the interval since the last report has passed."""
        now = self._clock()
        if self._pending and (self._last_ns is None or now - self._last_ns >= self._interval_ns):
            self._last_ns = now
            return self._take()
        return None

    def flush(self) -> ErrorReport | None:
        """Whatever is pending, whatever the time (the run ends)."""
        return self._take() if self._pending else None

    def _take(self) -> ErrorReport:
        report = ErrorReport(self._pending, self._latest)
        self._pending = 0
        return report
