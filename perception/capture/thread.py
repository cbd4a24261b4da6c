"""The one capture thread: reads a source, paces replays, reconnects lost cameras.

Live sources (and replays at --rate > 0) feed a latest-wins slot; replays at --rate 0 feed
a bounded lossless queue. A live source that stops delivering goes through
connecting -> streaming -> reconnecting (backoff) -> streaming, reporting each change;
it never injects placeholder frames. A live source's reads are watched (capture.watched_read):
one that has not returned within the stall timeout is abandoned, and the camera is reopened as
a new source object (the stuck one cannot be trusted with another call).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic

import numpy as np

from perception.capture.counters import DROP_OVERWRITTEN, DROP_SHUTDOWN, FrameCounters
from perception.capture.errors import SourceError, SourceLost
from perception.capture.slot import FrameSlot
from perception.capture.source import Source
from perception.capture.watched_read import ReadStalled, Stopped, WatchedReader
from perception.core.errors import FrameError
from perception.core.frame import Frame, P, monotonic_ns


class SourceState(str, enum.Enum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    ENDED = "ended"  # a finite source reached its end, or max_frames was read
    FAILED = "failed"  # an error that reconnecting cannot fix


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: first, doubled each failure, capped."""

    first_s: float = 0.5
    max_s: float = 10.0

    def delay(self, attempt: int) -> float:
        # the exponent is capped so a camera gone for hours never overflows the float
        return float(min(self.max_s, self.first_s * 2.0 ** min(max(0, attempt - 1), 60)))


StateListener = Callable[[SourceState, str], None]


class CaptureThread(threading.Thread, Generic[P]):
    """Owns the source after open(); pushes each state change to on_state (from this thread)."""

    def __init__(
        self,
        source: Source,
        slot: FrameSlot[P],
        counters: FrameCounters,
        *,
        rate: float = 1.0,
        max_frames: int = 0,
        backoff: Backoff | None = None,
        on_state: StateListener | None = None,
        prepare: Callable[[np.ndarray], P] | None = None,
        opened: bool = True,
        name: str = "capture",
        on_skip: Callable[[str], None] | None = None,
        stall_timeout_s: float = 0.0,
        reopen: Callable[[Source], Source] | None = None,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.source = source
        self.slot = slot
        self.counters = counters
        self.rate = rate
        self.max_frames = max_frames
        self.backoff = backoff or Backoff()
        self._on_state = on_state
        self._prepare = prepare  # e.g. Pipeline.prepare: the engine input is made here, off the engine's thread
        self._opened = opened  # False: the source failed to open at start, so the thread begins by reconnecting
        if on_skip is not None and hasattr(source, "on_skip"):  # a replay that skips files it cannot decode
            source.on_skip = on_skip
        # live sources only: a replay's read always ends, and reading it directly keeps lock-step cheap
        self.stall_timeout_s = stall_timeout_s if source.live else 0.0
        self._reopen = reopen or (lambda stuck: type(stuck)(stuck.uri))  # type: ignore[call-arg]
        self._reader = self._watch(source)
        self.abandoned_reads = 0
        self._stop_event = threading.Event()
        self.state = SourceState.CONNECTING if opened else SourceState.RECONNECTING
        self.state_detail = ""
        self.error: BaseException | None = None
        self.last_frame_ns = 0  # monotonic time of the last frame read
        self.reconnects = 0

    def stop(self) -> None:
        self._stop_event.set()
        self.slot.close()

    def _watch(self, source: Source) -> WatchedReader | None:
        return WatchedReader(source, f"{self.name}-read") if self.stall_timeout_s > 0 else None

    def _read(self) -> tuple[np.ndarray, int] | None:
        if self._reader is None:
            return self.source.read()
        return self._reader.read(self.stall_timeout_s, self._stop_event)

    def _abandon_source(self) -> None:
        """The stuck source is left to its reader thread; reconnecting opens a new one."""
        self.abandoned_reads += 1
        self.source = self._reopen(self.source)
        self._reader = self._watch(self.source)

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def _set_state(self, state: SourceState, detail: str = "") -> None:
        self.state, self.state_detail = state, detail
        if self._on_state is not None:
            self._on_state(state, detail)

    def run(self) -> None:
        try:
            self._loop()
        except SourceError as exc:
            self.error = exc
            self._set_state(SourceState.FAILED, str(exc))
        except Exception as exc:  # reported by the node as an error state, then re-raised there
            self.error = exc
            self._set_state(SourceState.FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            if self._reader is not None:
                self._reader.retire()  # closes the source now, or when a read still in flight returns
            else:
                self.source.close()
            self.slot.close()

    def _loop(self) -> None:
        """The node opens the source first, to report errors up front; if that failed, reconnect."""
        if not self._opened:
            if not self._reconnect("could not open at start"):
                return
        else:
            self._set_state(SourceState.STREAMING)
        first_stamp: int | None = None
        start_mono = 0
        index = 0
        while not self._stop_event.is_set():
            if self.max_frames and index >= self.max_frames:
                self._set_state(SourceState.ENDED, f"read max_frames={self.max_frames}")
                return
            try:
                item = self._read()
            except Stopped:
                return
            except SourceLost as exc:
                if isinstance(exc, ReadStalled):
                    self._abandon_source()
                if not self.source.live:
                    raise SourceError(f"source {self.source.uri.raw} failed mid-stream ({exc})",
                                      "check the file; frames before the failure were processed") from exc
                if not self._reconnect(str(exc)):
                    return
                continue
            if item is None:
                self._set_state(SourceState.ENDED, "end of stream")
                return
            image, stamp_ns = item
            if self._stop_event.is_set():  # a read that outlived the node's stop: count it, do not queue it
                self.counters.add_read_dropped(DROP_SHUTDOWN)
                return
            now = monotonic_ns()
            if not self.source.live and self.rate > 0:
                if first_stamp is None:
                    first_stamp, start_mono = stamp_ns, now
                due = start_mono + (stamp_ns - first_stamp) / self.rate
                if due > now and self._stop_event.wait((due - now) / 1e9):
                    return
                now = monotonic_ns()
            frame = self._frame(image, index, stamp_ns, now)
            index += 1
            self.last_frame_ns = now
            self.counters.add_read()
            displaced = self.slot.put(frame)
            if displaced is not None:
                self.counters.add_dropped(DROP_SHUTDOWN if displaced is frame else DROP_OVERWRITTEN)

    def _frame(self, image: np.ndarray, index: int, stamp_ns: int, now: int) -> Frame[P]:
        """The frame with its engine input, or with the FrameError its preprocessing raised."""
        if self._prepare is None:
            return Frame(image=image, index=index, stamp_ns=stamp_ns, capture_ns=now)
        try:
            prepared = self._prepare(image)
        except Exception as exc:  # cv2/numpy errors on one odd image must not end the stream
            error = FrameError(f"frame {index} ({image.shape[1]}x{image.shape[0]}) cannot be preprocessed "
                               f"({type(exc).__name__}: {exc})",
                               "check the source's images and the model card's [input]")
            return Frame(image=image, index=index, stamp_ns=stamp_ns, capture_ns=now, preprocess_error=error)
        return Frame(image=image, index=index, stamp_ns=stamp_ns, capture_ns=now, prepared=prepared,
                     prepared_ns=monotonic_ns())

    def _reconnect(self, reason: str) -> bool:
        """Reopen with backoff until it works or the node stops; False if stopped."""
        attempt = 0
        self._set_state(SourceState.RECONNECTING, reason)
        while not self._stop_event.is_set():
            attempt += 1
            if self._stop_event.wait(self.backoff.delay(attempt)):
                return False
            try:
                self.source.close()
                self.source.open()
            except (SourceError, SourceLost) as exc:
                self._set_state(SourceState.RECONNECTING, f"attempt {attempt} failed: {exc}")
                continue
            self.reconnects += 1
            self.last_frame_ns = monotonic_ns()  # the stall clock restarts with the new connection
            self._set_state(SourceState.STREAMING, f"reconnected after {attempt} attempt(s)")
            return True
        return False

