"""SIGTERM as an exception, like SIGINT's KeyboardInterrupt, so `with` blocks clean up on both.

Python's default SIGTERM ends the process without unwinding: temporary files stay behind.
The CLI exits 130 for SIGINT and 143 for SIGTERM (128 + signal number, as shells report).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived."""

    exit_code = 128 + signal.SIGTERM


def interrupt_exit_code(exc: KeyboardInterrupt) -> int:
    return int(getattr(exc, "exit_code", 128 + signal.SIGINT))


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block SIGTERM raises Terminated (main thread only)."""
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
