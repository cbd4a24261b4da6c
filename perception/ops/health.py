"""/healthz: healthy only after warm-up while frames flow; otherwise the reason."""

from __future__ import annotations

import threading

from perception.core.frame import monotonic_ns


class Health:
    """Thread-safe: the output loop reports, the HTTP thread asks."""

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s  # no published frame for this long while ready = unhealthy
        self._lock = threading.Lock()
        self._state, self._detail = "starting", ""
        self._last_frame_ns = 0

    def state(self, state: str, detail: str = "") -> None:
        with self._lock:
            self._state, self._detail = state, detail

    def frame(self) -> None:
        with self._lock:
            self._last_frame_ns = monotonic_ns()

    @property
    def current_state(self) -> str:
        with self._lock:
            return self._state

    def check(self) -> tuple[bool, str]:
        """(healthy, reason): 'ok', or what is wrong in words an operator reads in `curl` output."""
        with self._lock:
            state, detail, last = self._state, self._detail, self._last_frame_ns
        suffix = f" ({detail})" if detail else ""
        if state != "ready":
            return False, f"node is {state}{suffix}"
        if last == 0:
            return False, "ready but no frame published yet"
        silent_s = (monotonic_ns() - last) / 1e9
        if silent_s > self.stall_s:
            return False, f"no frame published for {silent_s:.1f} s"
        return True, "ok"
