"""`perception run` on a terminal: one line, rewritten in place, with state, fps, p50/p99 and drops."""

from __future__ import annotations

from typing import TextIO

from perception.ops.sample import NodeSample


class LiveStatus:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._shown = False

    @classmethod
    def for_stream(cls, stream: TextIO) -> LiveStatus | None:
        """Only a terminal gets the live line; a journal or a pipe gets the summary at exit."""
        isatty = getattr(stream, "isatty", None)
        return cls(stream) if isatty is not None and isatty() else None

    def show(self, state: str, sample: NodeSample) -> None:
        self.stream.write("\r\x1b[K" + sample.summary(state))  # carriage return + erase line
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
