"""One camera of a node: its source and capture thread, slot, counters, latency, tracker and state.

Everything a camera accounts for is its own, so `read == processed + dropped` holds per camera
and a lost camera reports `source_lost` on its own status topic while the others stay ready.
The engine and the socket are the node's, shared by all its cameras.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from perception.capture.counters import DROP_SHUTDOWN, FrameCounters
from perception.capture.slot import FrameSlot
from perception.capture.source import Source
from perception.capture.thread import Backoff, CaptureThread, SourceState
from perception.core.frame import monotonic_ns
from perception.core.queues import drain
from perception.ops.preview import ImagePreview
from perception.runtime.config import CameraConfig, NodeConfig
from perception.runtime.error_rate import ErrorRate
from perception.runtime.latency import LatencyBook
from perception.runtime.pipeline import Pipeline, Prepared
from perception.runtime.stages import Lane
from perception.tracking.base import Tracker, make_tracker


class CameraRun:
    def __init__(self, camera: CameraConfig, source: Source, config: NodeConfig,
                 clock: Callable[[], int] = monotonic_ns) -> None:
        self.camera = camera
        self.name = camera.name
        self.source = source
        self.counters = FrameCounters()
        self.latency = LatencyBook(config.run.latency_window)
        self.preview = ImagePreview(config.publish.image_rate_hz, config.publish.image_quality)
        tracking = config.tracking
        self.tracker: Tracker = make_tracker(tracking.tracker if tracking.enabled else "none", tracking.settings)
        self.state = "starting"  # the state this camera's heartbeat repeats
        self.published = 0
        self.last_error = ""
        self.errors = ErrorRate(clock)  # per-frame errors: at most one status a second, with a count
        self.opened = False
        self.capture: CaptureThread[Prepared] | None = None
        # the capture thread pushes its state changes here; the node's output loop drains them
        self._events: queue.SimpleQueue[tuple[SourceState, str]] = queue.SimpleQueue()
        self.skipped: queue.SimpleQueue[str] = queue.SimpleQueue()  # frames a replay could not decode
        self.source_state, self.source_detail = SourceState.CONNECTING, ""

    def start_capture(self, pipeline: Pipeline, *, max_frames: int, backoff: Backoff,
                      on_change: Callable[[], None]) -> CaptureThread[Prepared]:
        lossless = not self.source.live and self.camera.rate == 0
        slot: FrameSlot[Prepared] = FrameSlot(lossless=lossless, on_change=on_change)
        capture = CaptureThread(self.source, slot, self.counters, rate=self.camera.rate, max_frames=max_frames,
                                backoff=backoff, prepare=pipeline.prepare, opened=self.opened,
                                on_state=lambda state, detail: self._events.put((state, detail)),
                                name=f"capture-{self.name}", on_skip=self.skipped.put,
                                stall_timeout_s=self.camera.stall_timeout_s)
        self.capture = capture
        capture.start()
        return capture

    def lost_at_start(self, reason: str) -> None:
        """Its source did not open: reported lost until its capture thread reconnects it."""
        self.state = "source_lost"
        self.source_state, self.source_detail = SourceState.RECONNECTING, reason

    def lane(self) -> Lane:
        capture = self.capture
        assert capture is not None
        # a lossless replay queues frames on purpose: their age is backpressure, not staleness
        max_age_ns = 0 if capture.slot.lossless else int(self.camera.max_age_ms * 1e6)
        return Lane(capture.slot, self.counters, max_age_ns,
                    lambda: capture.state in (SourceState.CONNECTING, SourceState.STREAMING))

    def stop_capture(self) -> None:
        if self.capture is not None:
            self.capture.stop()

    def join_capture(self) -> None:
        if self.capture is not None:
            self.capture.join(timeout=5.0)
            self.counters.add_dropped(DROP_SHUTDOWN, len(self.capture.slot.drain()))

    def close_source_unless_captured(self) -> None:
        if self.capture is None:  # once started, the capture thread closes its source
            self.source.close()

    def take_skipped(self) -> list[str]:
        return drain(self.skipped)

    def take_source_events(self) -> str | None:
        """Drain the capture thread's state changes; the reason of a loss among them, if any (a camera
        lost and reconnected between two looks of the node is still reported lost, once)."""
        lost = None
        for state, detail in drain(self._events):
            self.source_state, self.source_detail = state, detail
            if state is SourceState.RECONNECTING:
                lost = detail
        return lost

    def operational_state(self, now: int) -> tuple[str, str]:
        """ready, or source_lost while the capture thread reconnects or a live source is silent."""
        lost = self.take_source_events()
        capture = self.capture
        if self.source_state is SourceState.RECONNECTING or lost is not None:
            return "source_lost", self.source_detail if lost is None else lost
        stall_ns = int(self.camera.stall_timeout_s * 1e9)
        if capture is not None and capture.source.live and capture.last_frame_ns and \
                now - capture.last_frame_ns > stall_ns:
            return "source_lost", f"no frame for {self.camera.stall_timeout_s:g} s"
        return "ready", ""

    def stats(self) -> dict[str, Any]:
        stats = self.latency.snapshot()
        stats["counters"] = self.counters.snapshot()
        stats["tracking"] = self.tracker.reports.counters()
        return stats


def combined_counters(cameras: list[CameraRun]) -> dict[str, Any]:
    """The node's counters: every camera's, added up (one camera: its own)."""
    read = processed = 0
    dropped: dict[str, int] = {}
    for camera in cameras:
        snap = camera.counters.snapshot()
        read += int(snap["read"])  # type: ignore[call-overload]
        processed += int(snap["processed"])  # type: ignore[call-overload]
        for cause, n in dict(snap["dropped"]).items():  # type: ignore[call-overload]
            dropped[cause] = dropped.get(cause, 0) + n
    return {"read": read, "processed": processed, "dropped": dropped}
