"""A live source's read() on a helper thread, so a read that never returns can be abandoned.

A USB driver that hangs or a network stream that stops sending mid-frame can block read()
forever; the capture thread must not hang with it. Each read is handed to this thread and
waited for at most the stall timeout. A read that takes longer is abandoned: the thread and its
source are left to themselves (daemon thread: it never keeps the process from exiting; if the
read ever returns, its frame is discarded and that source is closed there), and the capture
thread reopens the camera as a new source object. Replays are read directly: their reads end.
"""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np

from perception.capture.errors import SourceLost
from perception.capture.source import Source

STOP_CHECK_S = 0.05  # how often a waiting capture thread looks at its stop flag


class ReadStalled(SourceLost):
    """read() did not return within the stall timeout; the source was abandoned."""


class Stopped(Exception):
    """The capture thread was asked to stop while a read was in flight."""


class WatchedReader:
    def __init__(self, source: Source, name: str) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._want = threading.Event()
        self._done = threading.Event()
        self._busy = False
        self._abandoned = False
        self._result: tuple[np.ndarray, int] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def read(self, timeout_s: float, stop: threading.Event) -> tuple[np.ndarray, int] | None:
        """The source's read(); ReadStalled after timeout_s (the reader is then abandoned), Stopped on stop."""
        with self._lock:
            self._busy = True
            self._done.clear()
            self._want.set()
        deadline = time.monotonic() + timeout_s
        while not self._done.wait(max(0.0, min(STOP_CHECK_S, deadline - time.monotonic()))):
            if stop.is_set():
                raise Stopped()
            if time.monotonic() >= deadline:
                self.retire()
                raise ReadStalled(f"no frame for {timeout_s:g} s: the blocked read was abandoned and the camera "
                                  "is reopened")
        if self._error is not None:
            raise self._error
        return self._result

    def retire(self) -> None:
        """Done with this source: closed now if no read is in flight, else by the reader when it returns."""
        with self._lock:
            if self._abandoned:
                return
            self._abandoned = True
            busy = self._busy
            self._want.set()  # an idle reader wakes up and ends
        if not busy:
            self.source.close()

    def _run(self) -> None:
        while True:
            self._want.wait()
            with self._lock:
                self._want.clear()
                if self._abandoned:
                    return
            try:
                result, error = self.source.read(), None
            except BaseException as exc:  # handed to the capture thread, which raises it there
                result, error = None, exc
            with self._lock:
                self._busy = False
                if self._abandoned:  # the capture thread gave up on this read: drop it, close the source
                    break
                self._result, self._error = result, error
                self._done.set()
        with contextlib.suppress(Exception):
            self.source.close()
