"""The node: capture thread (read, preprocess) -> inference thread (engine) -> output loop
(decode, track, encode, publish, record).

The output loop is the calling thread; it alone touches the ZeroMQ socket and the recorder,
and it keeps the status heartbeat and the stats beating while frames are scarce. Decoding
frame N there overlaps the engine working on frame N+1.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perception import __version__
from perception.capture.counters import DROP_ERROR, DROP_SHUTDOWN, FrameCounters
from perception.capture.slot import FrameSlot
from perception.capture.source import Source, open_source
from perception.capture.thread import CaptureThread, SourceState
from perception.core.errors import PerceptionError
from perception.core.frame import Frame, Stage, monotonic_ns
from perception.core.result import FrameResult
from perception.inference.engine import EngineOptions
from perception.ops.operations import Operations, operations_for
from perception.ops.preview import ImagePreview
from perception.ops.sample import NodeSample
from perception.runtime.config import NodeConfig
from perception.runtime.latency import LatencyBook
from perception.runtime.pipeline import Pipeline, PipelineSpec
from perception.runtime.stages import FrameFailed, InferenceThread, InferredFrame, StageEnded
from perception.tracking.base import Tracker, make_tracker

if TYPE_CHECKING:
    from perception.record.recorder import Recorder
    from perception.wire.publisher import Publisher


log = logging.getLogger(__name__)

# states the heartbeat keeps repeating; "error" and "stopped" are one-off events
_HEARTBEAT_STATES = ("starting", "warming_up", "ready", "source_lost")


@dataclass(frozen=True)
class RunReport:
    counters: dict[str, Any]
    latency: dict[str, Any]
    published: int
    publisher_dropped: int
    source_state: str


class Node:
    def __init__(self, config: NodeConfig, ops: Operations | None = None) -> None:
        self.config = config
        o = config.ops
        self.ops = ops or operations_for(config.publish.camera, o.metrics, allow_public=o.allow_public,
                                         notify=o.notify, live_status=o.live_status and config.run.summary,
                                         stall_s=config.source.stall_timeout_s)
        self._preview = ImagePreview(config.publish.image_rate_hz, config.publish.image_quality)
        self.counters = FrameCounters()
        self.latency = LatencyBook(config.run.latency_window)
        self.state = "starting"
        self._detail = ""
        self._stop = threading.Event()
        self._published = 0
        self._last_error = ""
        self._inference: InferenceThread | None = None
        self._capture: CaptureThread | None = None
        self._publisher: Publisher | None = None

    def stop(self) -> None:
        """Ask the node to finish: stop capture, finish the frame in hand, close everything."""
        self._stop.set()

    def run(self) -> RunReport:
        from perception.wire.publisher import Publisher

        cfg = self.config
        source = open_source(cfg.source.uri)
        publisher = Publisher(cfg.publish.endpoint, cfg.publish.camera, compression=cfg.publish.compression,
                              sndhwm=cfg.publish.sndhwm, allow_public=cfg.publish.allow_public)
        recorder: Recorder | None = None
        capture: CaptureThread | None = None
        pipeline: Pipeline | None = None
        self._publisher = publisher
        try:
            self.ops.start(self._sample)
            self._status(publisher, "starting")
            pipeline = self._open_pipeline(publisher)
            source.open()
            recorder = self._open_recorder(pipeline, publisher)
            publisher.publish_metadata(self._metadata(pipeline, source))
            self._wait_for_subscribers(publisher)
            if not self._stop.is_set():  # a signal during start-up ends the run before any frame is read
                capture = self._start_capture(source, pipeline)
                self._status(publisher, "ready")
                self._work(capture, pipeline, publisher, recorder)
        except PerceptionError as exc:
            self._status(publisher, "error", str(exc))
            raise
        finally:
            if capture is not None:
                capture.stop()
                self._abandon_in_flight()
                capture.join(timeout=5.0)
                self.counters.add_dropped(DROP_SHUTDOWN, len(capture.slot.drain()))
            else:
                source.close()
            final_state = capture.state.value if capture is not None else "not_started"
            if capture is not None and capture.error is not None:
                self._status(publisher, "error", str(capture.error))
            self._status(publisher, "stopped", final_state)
            publisher.publish_stats(self._stats())
            self.ops.close()
            if recorder is not None:
                recorder.close()
            publisher.close()
            if pipeline is not None:
                pipeline.close()
        if capture is not None and capture.error is not None:
            raise capture.error
        return RunReport(self.counters.snapshot(), self.latency.snapshot(), self._published,
                         publisher.dropped, final_state)

    def _open_pipeline(self, publisher: Publisher) -> Pipeline:
        m = self.config.model
        spec = PipelineSpec(card=m.card, engine=m.engine,
                            options=EngineOptions(threads=m.threads, spin=m.spin, precision=m.precision))
        pipeline = Pipeline.open(spec)
        self._status(publisher, "warming_up")
        pipeline.warm_up(m.warmup_runs)
        return pipeline

    def _wait_for_subscribers(self, publisher: Publisher) -> None:
        wanted, timeout = self.config.publish.wait_subscribers, self.config.publish.wait_timeout_s
        if not wanted:
            return
        deadline = time.monotonic() + timeout
        next_beat = time.monotonic() + self.config.run.heartbeat_interval_s
        while not self._stop.is_set() and time.monotonic() < deadline:  # short slices: a signal ends the wait
            if publisher.wait_for_subscription("frame", 0.1, wanted):
                return
            if time.monotonic() >= next_beat:  # watchdogs expect a status about once a second, always
                self._status(publisher, self.state, f"waiting for {wanted} subscriber(s)")
                next_beat += self.config.run.heartbeat_interval_s
        if not self._stop.is_set():
            log.warning("%d subscriber(s) did not join within %g s; starting anyway", wanted, timeout)

    def _open_recorder(self, pipeline: Pipeline, publisher: Publisher) -> Recorder | None:
        rec = self.config.record
        if rec.path is None:
            return None
        from perception.record.recorder import Recorder

        metadata = {"launch": _flatten(self.config.to_dict()), "versions": {"perception": __version__},
                    "model_card": _flatten(pipeline.card.to_dict())}
        recorder = Recorder(rec.path, image_format=rec.image_format, metadata=metadata)
        publisher.tap = recorder.record_message
        return recorder

    def _start_capture(self, source: Source, pipeline: Pipeline) -> CaptureThread:
        s = self.config.source
        lossless = not source.live and s.rate == 0
        capture = CaptureThread(source, FrameSlot(lossless=lossless), self.counters, rate=s.rate,
                                max_frames=self.config.run.max_frames, prepare=pipeline.prepare)
        capture.start()
        self._capture = capture
        return capture

    def _source_state(self, capture: CaptureThread, stall_ns: int) -> tuple[str, str]:
        """ready, or source_lost while the capture thread reconnects or a live source is silent."""
        if capture.state is SourceState.RECONNECTING:
            return "source_lost", capture.state_detail
        if (capture.source.live and capture.last_frame_ns
                and monotonic_ns() - capture.last_frame_ns > stall_ns):
            return "source_lost", f"no frame for {self.config.source.stall_timeout_s:g} s"
        return "ready", ""

    def _work(self, capture: CaptureThread, pipeline: Pipeline, publisher: Publisher,
              recorder: Recorder | None) -> None:
        """The output loop: decode, track, publish, record; beats status and stats meanwhile."""
        run = self.config.run
        stall_ns = int(self.config.source.stall_timeout_s * 1e9)
        tracking = self.config.tracking
        tracker = make_tracker(tracking.tracker if tracking.enabled else "none",
                               iou_threshold=tracking.iou_threshold, max_missed=tracking.max_missed)
        # a lossless replay queues frames on purpose: their age is backpressure, not staleness
        max_age_ns = 0 if capture.slot.lossless else int(self.config.source.max_age_ms * 1e6)
        self._inference = InferenceThread(capture.slot, pipeline, self.counters, max_age_ns)
        self._inference.start()
        next_beat = next_stats = time.monotonic()
        while True:
            if self._stop.is_set() and not capture.stopping:
                self.ops.stopping()
                capture.stop()  # the inference stage finishes what the slot holds, then ends
            self.ops.tick()
            now = time.monotonic()
            state, detail = self._source_state(capture, stall_ns)
            if state != self.state:
                next_beat = now  # a change is published at once, then repeated by the heartbeat
            if now >= next_beat:
                self._status(publisher, state, detail)
                next_beat = now + run.heartbeat_interval_s
            if now >= next_stats:
                publisher.publish_stats(self._stats())
                next_stats = now + run.stats_interval_s
            publisher.service()
            try:
                item = self._inference.handoff.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(item, StageEnded):
                if item.crash is not None:
                    raise item.crash
                return
            if isinstance(item, FrameFailed):
                self._report_frame_error(publisher, item.frame, item.error)
                continue
            self._output(item, pipeline, tracker, publisher, recorder)

    def _output(self, item: InferredFrame, pipeline: Pipeline, tracker: Tracker,
                publisher: Publisher, recorder: Recorder | None) -> None:
        frame, stamps = item.frame, item.stamps
        try:
            segmentation = pipeline.decode(item.inferred, stamps)
        except PerceptionError as exc:
            self.counters.add_dropped(DROP_ERROR)
            self._report_frame_error(publisher, frame, exc)
            return
        segmentation = tracker.update(segmentation)
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
        self.latency.add({**result.stamps, Stage.ENCODE.value: published.encode_ns,
                          Stage.PUBLISH.value: published.publish_ns})
        self.ops.frame({**result.stamps, Stage.ENCODE.value: published.encode_ns,
                        Stage.PUBLISH.value: published.publish_ns})
        if recorder is not None:
            recorder.record_frame(frame)
            recorder.record_result(result, pipeline.card.class_names)

    def _report_frame_error(self, publisher: Publisher, frame: Frame, error: PerceptionError) -> None:
        """One bad frame (e.g. NaN outputs) is reported and dropped; the stream goes on."""
        if str(error) != self._last_error:
            log.warning("frame %d: %s", frame.index, error, extra={"frame_index": frame.index})
            self._last_error = str(error)
        publisher.publish_status("error", self.counters.snapshot(), f"frame {frame.index}: {error}")

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

    def _status(self, publisher: Publisher, state: str, detail: str = "") -> None:
        """Publish a state; operational ones also become the state the heartbeat repeats."""
        if state in _HEARTBEAT_STATES:
            self.state, self._detail = state, detail
            self.ops.state(state, detail)
        elif state == "stopped":
            self.ops.state(state, detail)
        publisher.publish_status(state, self.counters.snapshot(), detail)

    def _stats(self) -> dict[str, Any]:
        stats = self.latency.snapshot()
        stats["counters"] = self.counters.snapshot()
        return stats

    def _sample(self) -> NodeSample:
        """For the metrics scrape (another thread) and the status line: counts are locked, the rest is reads."""
        capture, inference, publisher = self._capture, self._inference, self._publisher
        queues = {"capture": capture.slot.depth if capture else 0,
                  "inference": inference.handoff.qsize() if inference else 0}
        subscriptions = {k.value: n for k, n in dict(publisher.open_subscriptions).items()} if publisher else {}
        return NodeSample(self.counters.snapshot(), self.latency.snapshot(), queues, subscriptions,
                          capture.reconnects if capture else 0)

    def _metadata(self, pipeline: Pipeline, source: Source) -> dict[str, Any]:
        card = pipeline.card
        self.ops.describe({"engine": pipeline.engine.name, "model": card.name, "source": source.uri.raw,
                           "precision": self.config.model.precision, "version": __version__})
        return {
            "camera": self.config.publish.camera,
            "source": source.uri.raw,
            "engine": pipeline.engine.name,
            "model": card.to_dict(),
            "class_names": {c.id: c.name for c in card.classes},
            "versions": {"perception": __version__},
        }


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """MCAP metadata records are str -> str maps."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = str(value)
    return out
