"""Taking everything a queue holds now, without waiting (one thread posts events, another drains them)."""

from __future__ import annotations

import queue
from typing import Protocol, TypeVar

T_co = TypeVar("T_co", covariant=True)


class _Nonblocking(Protocol[T_co]):
    """queue.Queue, queue.SimpleQueue and multiprocessing's queues alike: all raise queue.Empty."""

    def get_nowait(self) -> T_co: ...


def drain(q: _Nonblocking[T_co]) -> list[T_co]:
    out: list[T_co] = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out
