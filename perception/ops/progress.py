"""Progress of long work (synth, eval, build-engine's gate, a lossless replay).

On a terminal a tqdm bar with rate and ETA; otherwise (a journal, a pipe, CI) a plain line at
most every `interval_s` and one at the end, so logs show progress without a line per frame.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

PLAIN_INTERVAL_S = 5.0


class Progress:
    def __init__(self, label: str, total: int | None, *, unit: str = "frame", stream: TextIO | None = None,
                 interval_s: float = PLAIN_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.interval_s, self.clock = interval_s, clock
        self.done = 0
        self._started = clock()
        self._next_line = self._started + interval_s
        self._postfix = ""
        self._bar: Any = None
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit=unit, file=self.stream, dynamic_ncols=True,
                             mininterval=0.2, leave=True)

    def update(self, done: int) -> None:
        """`done` units finished so far (absolute, so callers that count need not diff)."""
        if self._bar is not None:
            self._bar.update(done - self.done)
            self.done = done
            return
        self.done = done
        now = self.clock()
        if now >= self._next_line:
            self._next_line = now + self.interval_s
            self._line(now)

    def postfix(self, text: str) -> None:
        """Extra words after the count (e.g. fps and latency), shown with the next update."""
        self._postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            return
        elapsed = self.clock() - self._started
        self.stream.write(f"{self.label}: {self.done} {self.unit}s in {elapsed:.1f} s\n")
        self.stream.flush()

    def _line(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        parts = [f"{self.label}: {count} {self.unit}s"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts.append(f"{rate:.1f} {self.unit}s/s")
        if self.total and rate > 0:
            parts.append(f"ETA {max(self.total - self.done, 0) / rate:.0f} s")
        if self._postfix:
            parts.append(self._postfix)
        self.stream.write(", ".join(parts) + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
