"""SIGTERM as an exception, like SIGINT's KeyboardInterrupt, so `with` blocks clean up on both.

Python's default SIGTERM ends the process without unwinding: temporary files stay behind.
The CLI exits 130 for SIGINT and 143 for SIGTERM (128 + signal number, as shells report).

Start-up has two modes, so a signal at any moment of it gives that exit code, never a traceback
or a bare death by SIGTERM:
- `exit_on_signals`, the CLI's first act, before the heavy imports: the process exits at once.
  Nothing exists yet that needs cleaning up, and unwinding is not an option there: an exception
  raised inside a C extension's import (NumPy's, OpenCV's) comes out as an ImportError with a
  traceback, not as KeyboardInterrupt;
- `unwind_on_signals`, once the imports are done and before the command creates anything:
  SIGINT raises KeyboardInterrupt, SIGTERM Terminated, so `with` blocks close the recording and
  remove temporary files. One signal is enough: a repeat while the first one's clean-up runs is
  ignored, so the clean-up is not cut short.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

# a repeat this soon after the first signal is ignored; a later one raises again (in case
# something swallowed the first, a second Ctrl-C must still work)
REPEAT_GRACE_S = 5.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived."""

    exit_code = 128 + signal.SIGTERM


def interrupt_exit_code(exc: KeyboardInterrupt) -> int:
    return int(getattr(exc, "exit_code", 128 + signal.SIGINT))


class _RaiseOnce:
    """The handler: SIGINT raises KeyboardInterrupt, SIGTERM Terminated; repeats within the grace are ignored."""

    def __init__(self) -> None:
        self.first_at: float | None = None
        self.exiting = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.exiting or (self.first_at is not None and now - self.first_at < REPEAT_GRACE_S):
            return
        self.first_at = now
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


_handler = _RaiseOnce()


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(128 + signum)


def exit_on_signals() -> Callable[[], None]:
    """SIGINT and SIGTERM end the process at once with 130/143 (main thread; nothing made yet to clean up);
    returns what puts the previous handlers back."""
    _handler.first_at, _handler.exiting = None, False
    previous = {s: signal.signal(s, _exit_now) for s in SIGNALS}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def unwind_on_signals() -> None:
    """From here SIGINT raises KeyboardInterrupt and SIGTERM Terminated, once (see the module's doc)."""
    for sig in SIGNALS:
        signal.signal(sig, _handler)


def raise_interrupt(signum: int) -> None:
    """From a command's own handler: unwind as exit_on_signals would (once, then ignore repeats)."""
    _handler(signum, None)


def ignore_signals_while_exiting() -> None:
    """The exit code is decided: a signal during interpreter shutdown changes nothing."""
    _handler.exiting = True


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block SIGTERM raises Terminated (main thread only)."""
    previous = signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
