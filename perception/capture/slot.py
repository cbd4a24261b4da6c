"""The hand-off between the capture thread and the worker.

Live: one slot, latest wins; an unread frame that is overwritten is returned to the caller
to be counted as dropped. Lossless (replay at --rate 0): a small bounded queue whose put
blocks, so no frame is lost and memory stays bounded.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Generic

from perception.core.frame import Frame, P


class SlotClosed(Exception):
    """The producer has finished and everything put has been taken."""


class FrameSlot(Generic[P]):
    def __init__(self, lossless: bool, capacity: int = 4, on_change: Callable[[], None] | None = None) -> None:
        """on_change: called after every put and close, e.g. to wake a worker that waits on several slots."""
        self.lossless = lossless
        self._on_change = on_change
        self._capacity = capacity if lossless else 1
        self._items: collections.deque[Frame[P]] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, frame: Frame[P]) -> Frame[P] | None:
        """Hand a frame over; returns the frame it displaced (live) or None."""
        with self._cond:
            if self.lossless:
                while len(self._items) >= self._capacity and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return frame
                self._items.append(frame)
                self._cond.notify_all()
                displaced = None
            else:
                displaced = self._items.popleft() if self._items else None
                self._items.append(frame)
                self._cond.notify_all()
        if self._on_change is not None:
            self._on_change()
        return displaced

    def get(self, timeout: float) -> Frame[P] | None:
        """Next frame, None on timeout; SlotClosed once closed and drained."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            return self._pop()

    def take(self) -> Frame[P] | None:
        """The next frame without waiting, None if there is none yet; SlotClosed once closed and drained."""
        with self._cond:
            return self._pop()

    def _pop(self) -> Frame[P] | None:
        if self._items:
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame
        if self._closed:
            raise SlotClosed
        return None

    @property
    def depth(self) -> int:
        """Frames waiting for the worker (for the queue-depth metric)."""
        return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._on_change is not None:
            self._on_change()

    def drain(self) -> list[Frame[P]]:
        """Remove and return what is queued (used at shutdown to count it)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items
