"""The node: capture thread (read, preprocess) -> inference thread (engine) -> output loop
(decode, track, encode, publish, record).

The node is assembled from parts (runtime.parts: source, pipeline opener, publisher, recorder,
operations, clock, backoff), owns them for one run, and closes them in reverse order through an ExitStack. The
output loop is the calling thread; it alone touches the ZeroMQ socket and the recorder, and it
keeps the status heartbeat and the stats beating while frames are scarce. The capture thread
pushes its state changes onto a queue that the loop drains. Decoding frame N in the loop
overlaps the engine working on frame N+1.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from perception import __version__
from perception.capture.counters import DROP_ERROR, DROP_SHUTDOWN, FrameCounters
from perception.capture.slot import FrameSlot
from perception.capture.thread import CaptureThread, SourceState
from perception.core.errors import PerceptionError
from perception.core.frame import Frame, Stage
from perception.core.result import FrameResult
from perception.ops.operations import Operations
from perception.ops.preview import ImagePreview
from perception.ops.sample import NodeSample
from perception.runtime.config import NodeConfig
from perception.runtime.latency import LatencyBook
from perception.runtime.parts import NodeParts, build_parts
from perception.runtime.pipeline import Pipeline, Prepared
from perception.runtime.stages import FrameFailed, InferenceThread, InferredFrame, StageEnded
from perception.tracking.base import Tracker, make_tracker
from perception.wire.schema import Kind

log = logging.getLogger(__name__)

# states the heartbeat keeps repeating; "error" and "stopped" are one-off events
_HEARTBEAT_STATES = ("starting", "warming_up", "ready", "source_lost")


@dataclass(frozen=True)
class RunReport:
    counters: dict[str, Any]
    latency: dict[str, Any]
    published: int
    publisher_dropped: int
    frame_subscribers: int = 0  # the most frame subscribers connected at once during the run


class Node:
    """One run of one camera. It owns the parts it is given and closes them when run() ends."""

    def __init__(self, config: NodeConfig, parts: NodeParts) -> None:
        self.config = config
        self.parts = parts
        self.ops = parts.ops or Operations.quiet(config.publish.camera)
        self._preview = ImagePreview(config.publish.image_rate_hz, config.publish.image_quality)
        self.counters = FrameCounters()
        self.latency = LatencyBook(config.run.latency_window)
        self.state = "starting"
        self._stop = threading.Event()
        self._published = 0
        self._frame_subscribers = 0
        self._last_error = ""
        self._capture: CaptureThread[Prepared] | None = None
        self._inference: InferenceThread | None = None
        # the capture thread pushes its state changes here; the output loop drains them
        self._source_events: queue.SimpleQueue[tuple[SourceState, str]] = queue.SimpleQueue()
        self._source_state, self._source_detail = SourceState.CONNECTING, ""
        self._tracker: Tracker | None = None

    @classmethod
    def from_config(cls, config: NodeConfig) -> Node:
        """The node the CLI runs: parts made from the launch configuration."""
        return cls(config, build_parts(config))

    def stop(self) -> None:
        """Ask the node to finish: stop capture, finish the frame in hand, close everything."""
        self._stop.set()

    def run(self) -> RunReport:
        parts = self.parts
        # closes in reverse: capture, engine, source, last status, operators' reports, socket, recording
        with ExitStack() as stack:
            if parts.recorder is not None:
                stack.callback(parts.recorder.close)
            stack.callback(parts.publisher.close)
            stack.callback(self.ops.close)
            stack.callback(self._announce_end)
            stack.callback(self._close_source_unless_captured)
            try:
                self.ops.start(self._sample)
                self._status("starting")
                pipeline = parts.open_pipeline()
                stack.callback(pipeline.close)
                if parts.engine_lifecycle is not None:  # stops a background build before the engine closes
                    stack.callback(parts.engine_lifecycle.close)
                self._status("warming_up")
                pipeline.warm_up(self.config.model.warmup_runs)
                parts.source.open()
                if not parts.source.live and self.config.source.rate == 0:  # lossless replay: a progress bar
                    self.ops.replaying(getattr(parts.source, "length", None), self.config.run.max_frames)
                parts.publisher.publish_metadata(self._metadata(pipeline))
                self._wait_for_subscribers()
                if not self._stop.is_set():  # a signal during start-up ends the run before any frame is read
                    capture = self._start_capture(pipeline)
                    stack.callback(self._stop_capture, capture)
                    self._status("ready", self._ready(pipeline) or self._engine_detail())
                    self._work(capture, pipeline)
            except PerceptionError as exc:
                self._status("error", str(exc))
                raise
        if self._capture is not None and self._capture.error is not None:
            raise self._capture.error
        return RunReport(self.counters.snapshot(), self.latency.snapshot(), self._published,
                         parts.publisher.dropped, self._frame_subscribers)

    def _ready(self, pipeline: Pipeline) -> str:
        """Say what runs, now that it does (not before a start-up error); returns the ready detail."""
        p, source = self.config.publish, self.parts.source
        log.info("%s -> %s (%s) -> %s topic perception/%s/", source.uri.raw, pipeline.card.name,
                 pipeline.engine.name, p.endpoint, p.camera)
        if not pipeline.card.synthetic_domain or getattr(source, "synthetic", False):
            return ""
        # on camera footage the shipped model reports confident "cars" in a pedestrian plaza
        warning = (f"warning: model {pipeline.card.name!r} is a synthetic-domain model (trained on perception.synth "
                   f"scenes only) and {source.uri.raw!r} is not a synthetic drive: its objects here are not "
                   "meaningful; run your own model (README, 'Bring your own model')")
        log.warning("%s", warning)
        return warning

    def _wait_for_subscribers(self) -> None:
        wanted, timeout = self.config.publish.wait_subscribers, self.config.publish.wait_timeout_s
        if not wanted:
            return
        clock, beat_ns = self.parts.clock, int(self.config.run.heartbeat_interval_s * 1e9)
        deadline = clock() + int(timeout * 1e9)
        next_beat = clock() + beat_ns
        while not self._stop.is_set() and clock() < deadline:  # short slices: a signal ends the wait
            if self.parts.publisher.wait_for_subscription("frame", 0.1, wanted):
                return
            if clock() >= next_beat:  # watchdogs expect a status about once a second, always
                self._status(self.state, f"waiting for {wanted} subscriber(s)")
                next_beat += beat_ns
        if not self._stop.is_set():
            log.warning("%d subscriber(s) did not join within %g s; starting anyway", wanted, timeout)

    def _start_capture(self, pipeline: Pipeline) -> CaptureThread[Prepared]:
        s, source = self.config.source, self.parts.source
        lossless = not source.live and s.rate == 0
        slot: FrameSlot[Prepared] = FrameSlot(lossless=lossless)
        capture = CaptureThread(source, slot, self.counters, rate=s.rate, max_frames=self.config.run.max_frames,
                                backoff=self.parts.backoff, prepare=pipeline.prepare,
                                on_state=lambda state, detail: self._source_events.put((state, detail)))
        self._capture = capture
        capture.start()
        return capture

    def _stop_capture(self, capture: CaptureThread[Prepared]) -> None:
        capture.stop()
        self._abandon_in_flight()
        capture.join(timeout=5.0)
        self.counters.add_dropped(DROP_SHUTDOWN, len(capture.slot.drain()))

    def _close_source_unless_captured(self) -> None:
        if self._capture is None:  # once started, the capture thread closes its source
            self.parts.source.close()

    def _announce_end(self) -> None:
        """The last status (why the run ended) and the last stats, after capture has stopped."""
        self._take_source_events()
        capture = self._capture
        if capture is not None and capture.error is not None:
            self._status("error", str(capture.error))
        self._status("stopped", self._source_state.value if capture is not None else "not_started")
        self.parts.publisher.publish_stats(self._stats())

    def _take_source_events(self) -> None:
        while True:
            try:
                self._source_state, self._source_detail = self._source_events.get_nowait()
            except queue.Empty:
                return

    def _operational_state(self, capture: CaptureThread[Prepared], now: int, stall_ns: int) -> tuple[str, str]:
        """ready, or source_lost while the capture thread reconnects or a live source is silent."""
        self._take_source_events()
        if self._source_state is SourceState.RECONNECTING:
            return "source_lost", self._source_detail
        if capture.source.live and capture.last_frame_ns and now - capture.last_frame_ns > stall_ns:
            return "source_lost", f"no frame for {self.config.source.stall_timeout_s:g} s"
        return "ready", self._engine_detail()

    def _engine_detail(self) -> str:
        """Which engine serves while the lifecycle upgrades it ("" without a lifecycle)."""
        lifecycle = self.parts.engine_lifecycle
        return lifecycle.detail() if lifecycle is not None else ""

    def _engine_news(self, pipeline: Pipeline) -> None:
        """The engine lifecycle's one-off statuses; after a swap, metadata naming the new engine."""
        lifecycle = self.parts.engine_lifecycle
        for event in lifecycle.take_events() if lifecycle is not None else ():
            if event.swapped:
                self.parts.publisher.publish_metadata(self._metadata(pipeline))
            self._status(event.state, event.detail)

    def _work(self, capture: CaptureThread[Prepared], pipeline: Pipeline) -> None:
        """The output loop: decode, track, publish, record; beats status and stats meanwhile."""
        publisher, clock = self.parts.publisher, self.parts.clock
        beat_ns, stats_ns = int(self.config.run.heartbeat_interval_s * 1e9), int(self.config.run.stats_interval_s * 1e9)
        stall_ns = int(self.config.source.stall_timeout_s * 1e9)
        tracking = self.config.tracking
        tracker = self._tracker = make_tracker(tracking.tracker if tracking.enabled else "none",
                                               tracking.settings)
        # a lossless replay queues frames on purpose: their age is backpressure, not staleness
        max_age_ns = 0 if capture.slot.lossless else int(self.config.source.max_age_ms * 1e6)
        self._inference = InferenceThread(capture.slot, pipeline, self.counters, max_age_ns)
        self._inference.start()
        # run() has just published "ready": the next status is a change or the next beat, not a copy
        next_beat, next_stats = clock() + beat_ns, clock()
        while True:
            if self._stop.is_set() and not capture.stopping:
                self.ops.stopping()
                capture.stop()  # the inference stage finishes what the slot holds, then ends
            self.ops.tick()
            now = clock()
            self._engine_news(pipeline)  # before the heartbeat: a switch is announced before it is repeated
            state, detail = self._operational_state(capture, now, stall_ns)
            if state != self.state:
                next_beat = now  # a change is published at once, then repeated by the heartbeat
            if now >= next_beat:
                self._status(state, detail)
                next_beat = now + beat_ns
            if now >= next_stats:
                publisher.publish_stats(self._stats())
                next_stats = now + stats_ns
            publisher.service()
            self._frame_subscribers = max(self._frame_subscribers, publisher.open_subscriptions[Kind.FRAME])
            try:
                item = self._inference.handoff.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(item, StageEnded):
                if item.crash is not None:
                    raise item.crash
                return
            if isinstance(item, FrameFailed):
                self._report_frame_error(item.frame, item.error)
                continue
            self._output(item, pipeline, tracker)

    def _output(self, item: InferredFrame, pipeline: Pipeline, tracker: Tracker) -> None:
        frame, stamps = item.frame, item.stamps
        publisher, recorder = self.parts.publisher, self.parts.recorder
        try:
            segmentation = pipeline.decode(item.inferred, stamps)
        except PerceptionError as exc:
            self.counters.add_dropped(DROP_ERROR)
            self._report_frame_error(frame, exc)
            return
        segmentation = tracker.update(segmentation, frame.stamp_ns)
        for report in tracker.reports.take():  # a clock step, NaN boxes, a capped frame
            self._status("error" if report.error else self.state,
                         f"frame {frame.index}: {report.detail}" if report.error else report.detail)
        result = FrameResult(camera=self.config.publish.camera, frame_index=frame.index, stamp_ns=frame.stamp_ns,
                             width=frame.width, height=frame.height, segmentation=segmentation,
                             stamps=stamps.as_dict())
        publisher.service()  # a subscriber that just joined gets the metadata before its first frame
        if self._preview.due():  # before its result, so a viewer has the picture when the masks arrive
            publisher.publish_image(frame.index, frame.stamp_ns, frame.width, frame.height,
                                    self._preview.encode(frame.image))
        published = publisher.publish_frame(result)
        self._published += 1
        self.counters.add_processed()
        stage_stamps = {**result.stamps, Stage.ENCODE.value: published.encode_ns,
                        Stage.PUBLISH.value: published.publish_ns}
        self.latency.add(stage_stamps)
        self.ops.frame(stage_stamps)
        self.ops.result(frame.image, result, pipeline.card.class_names)
        if recorder is not None:
            recorder.record_frame(frame)
            recorder.record_result(result, pipeline.card.class_names)

    def _report_frame_error(self, frame: Frame[Prepared], error: PerceptionError) -> None:
        """One bad frame (e.g. NaN outputs) is reported and dropped; the stream goes on."""
        if str(error) != self._last_error:
            log.warning("frame %d: %s", frame.index, error, extra={"frame_index": frame.index})
            self._last_error = str(error)
        self.parts.publisher.publish_status("error", self.counters.snapshot(), f"frame {frame.index}: {error}")

    def _abandon_in_flight(self) -> None:
        """After a failure: let the inference stage finish, counting what it still held."""
        if self._inference is None:
            return
        deadline = time.monotonic() + 5.0
        while self._inference.is_alive() or not self._inference.handoff.empty():
            try:
                item = self._inference.handoff.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() > deadline:
                    return
                continue
            if isinstance(item, InferredFrame):
                self.counters.add_dropped(DROP_SHUTDOWN)
            elif isinstance(item, StageEnded):
                return

    def _status(self, state: str, detail: str = "") -> None:
        """Publish a state; operational ones also become the state the heartbeat repeats."""
        if state in _HEARTBEAT_STATES:
            self.state = state
        if state in _HEARTBEAT_STATES or state == "stopped":
            self.ops.state(state, detail)
        self.parts.publisher.publish_status(state, self.counters.snapshot(), detail)

    def _stats(self) -> dict[str, Any]:
        stats = self.latency.snapshot()
        stats["counters"] = self.counters.snapshot()
        if self._tracker is not None:
            stats["tracking"] = self._tracker.reports.counters()
        return stats

    def _sample(self) -> NodeSample:
        """For the metrics scrape (another thread) and the status line: counts are locked, the rest is reads."""
        capture, inference, publisher = self._capture, self._inference, self.parts.publisher
        queues = {"capture": capture.slot.depth if capture else 0,
                  "inference": inference.handoff.qsize() if inference else 0}
        subscriptions = {k.value: n for k, n in dict(publisher.open_subscriptions).items()}
        return NodeSample(self.counters.snapshot(), self.latency.snapshot(), queues, subscriptions,
                          capture.reconnects if capture else 0)

    def _metadata(self, pipeline: Pipeline) -> dict[str, Any]:
        card = pipeline.card
        self.ops.describe({"engine": pipeline.engine.name, "model": card.name, "source": self.parts.source.uri.raw,
                           "precision": self.config.model.precision, "version": __version__})
        return {
            "camera": self.config.publish.camera,
            "source": self.parts.source.uri.raw,
            "engine": pipeline.engine.name,
            "model": card.to_dict(),
            "class_names": {c.id: c.name for c in card.classes},
            "versions": {"perception": __version__},
        }
