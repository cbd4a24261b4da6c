"""The node: a capture thread per camera (read, preprocess) -> one inference thread (the engine,
batching the cameras' frames) -> output loop (decode, track, encode, publish, record).

The node is assembled from parts (runtime.parts: source, pipeline opener, publisher, recorder,
operations, clock, backoff), owns them for one run, and closes them in reverse order through an ExitStack. The
output loop is the calling thread; it alone touches the ZeroMQ socket and the recorder, and it
keeps every camera's status heartbeat and stats beating while frames are scarce. Each capture
thread pushes its state changes onto its camera's queue, which the loop drains. Decoding frame N
in the loop overlaps the engine working on the next batch. Per-camera state lives in
runtime.camera; one camera is the case of a single-camera launch file.
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
from perception.capture.counters import DROP_ERROR, DROP_SHUTDOWN
from perception.capture.errors import SourceLost
from perception.core.errors import ConfigError, PerceptionError, SourceError
from perception.core.frame import Frame, Stage
from perception.core.result import FrameResult
from perception.ops.operations import Operations
from perception.ops.sample import NodeSample
from perception.runtime.camera import CameraRun, combined_counters
from perception.runtime.config import NodeConfig
from perception.runtime.error_rate import ErrorReport
from perception.runtime.latency import LatencyBook
from perception.runtime.parts import NodeParts, build_parts
from perception.runtime.pipeline import Pipeline, Prepared
from perception.runtime.stages import Doorbell, FrameFailed, InferenceThread, InferredFrame, StageEnded
from perception.wire.schema import Kind

log = logging.getLogger(__name__)

# states the heartbeat keeps repeating; "error" and "stopped" are one-off events
_HEARTBEAT_STATES = ("starting", "warming_up", "ready", "source_lost")


@dataclass(frozen=True)
class RunReport:
    counters: dict[str, Any]  # every camera's, added up
    latency: dict[str, Any]  # every frame of every camera
    published: int
    publisher_dropped: int
    cameras: dict[str, dict[str, Any]]  # name -> {"counters", "latency", "published"}
    frame_subscribers: int = 0  # the most frame subscribers connected at once during the run


class Node:
    """One run of one or more cameras. It owns the parts it is given and closes them when run() ends."""

    def __init__(self, config: NodeConfig, parts: NodeParts) -> None:
        self.config = config
        self.parts = parts
        self.ops = parts.ops or Operations.quiet([c.name for c in config.cameras])
        self.cameras = [CameraRun(camera, source, config, parts.clock) for camera, source in
                        zip(config.cameras, _sources_by_camera(config, parts), strict=True)]
        self.latency = LatencyBook(config.run.latency_window)  # all cameras: the operators' figure
        self.state = "starting"
        self._stop = threading.Event()
        self._doorbell = Doorbell()
        self._inference: InferenceThread | None = None
        self._captured = False
        self._frame_subscribers = 0
        self._parts_taken = False  # run() has taken the parts over and closes them

    @classmethod
    def from_config(cls, config: NodeConfig) -> Node:
        """The node the CLI runs: parts made from the launch configuration."""
        parts = build_parts(config)
        try:
            return cls(config, parts)
        except BaseException:  # a bad camera map, or a signal: the socket and recording are closed
            _close_parts(parts)
            raise

    def close(self) -> None:
        """Close the parts if run() never took them over (a signal before it began); else nothing."""
        if not self._parts_taken:
            self._parts_taken = True
            for camera in self.cameras:
                camera.close_source_unless_captured()
            self.ops.close()
            _close_parts(self.parts)

    def stop(self) -> None:
        """Ask the node to finish: stop capture, finish the frames in hand, close everything."""
        self._stop.set()

    @property
    def processed(self) -> int:
        return sum(c.counters.processed for c in self.cameras)

    def summary_lines(self) -> list[str]:
        """Each camera's `read = processed + dropped` line."""
        return [(f"{c.name}: " if len(self.cameras) > 1 else "") + c.counters.summary_line() for c in self.cameras]

    def run(self) -> RunReport:
        parts = self.parts
        # closes in reverse: capture, engine, sources, last status, operators' reports, socket, recording
        with ExitStack() as stack:
            if parts.recorder is not None:
                stack.callback(parts.recorder.close)
            stack.callback(parts.publisher.close)
            stack.callback(self.ops.close)
            stack.callback(self._announce_end)
            for camera in self.cameras:
                stack.callback(camera.close_source_unless_captured)
            self._parts_taken = True
            try:
                self.ops.start(self._sample)
                self._status("starting")
                log.debug("opening the engine")
                pipeline = parts.open_pipeline()
                if parts.close_pipeline:
                    stack.callback(pipeline.close)
                if parts.engine_lifecycle is not None:  # stops a background build before the engine closes
                    stack.callback(parts.engine_lifecycle.close)
                batch = self._batch_size(pipeline)
                self._status("warming_up")
                pipeline.warm_up(self.config.model.warmup_runs)
                log.debug("opening the source(s)")
                self._open_sources()
                self._show_replay_progress()
                for camera in self.cameras:
                    parts.publisher.publish_metadata(self._metadata(pipeline, camera), camera.name)
                self._wait_for_subscribers()
                if not self._stop.is_set():  # a signal during start-up ends the run before any frame is read
                    self._start_capture(pipeline)
                    stack.callback(self._stop_capture)
                    self._status("ready", self._engine_detail(), details=self._ready(pipeline))
                    self._work(pipeline, batch)
            except PerceptionError as exc:  # a fatal engine error (EngineFailed) too: the CLI exits with its code
                self._status("error", str(exc))
                raise
            except Exception as exc:  # a bug: subscribers hear why the node ends; the traceback stays
                self._status("error", f"internal error: {type(exc).__name__}: {exc}")
                raise
        for camera in self.cameras:
            if camera.capture is not None and camera.capture.error is not None:
                raise camera.capture.error
        return RunReport(combined_counters(self.cameras), self.latency.snapshot(),
                         sum(c.published for c in self.cameras), parts.publisher.dropped,
                         {c.name: {"counters": c.counters.snapshot(), "latency": c.latency.snapshot(),
                                   "published": c.published} for c in self.cameras},
                         self._frame_subscribers)

    def _ready(self, pipeline: Pipeline) -> dict[str, str]:
        """Say what runs, now that it does (not before a start-up error); returns each camera's ready detail."""
        p, details = self.config.publish, {}
        for camera in self.cameras:
            source = camera.source
            log.info("%s -> %s (%s) -> %s topic perception/%s/", source.uri.raw, pipeline.card.name,
                     pipeline.engine.name, p.endpoint, camera.name)
            if not pipeline.card.synthetic_domain or getattr(source, "synthetic", False):
                continue
            # on camera footage the shipped model reports confident "cars" in a pedestrian plaza
            warning = (f"warning: model {pipeline.card.name!r} is a synthetic-domain model (trained on "
                       f"perception.synth scenes only) and {source.uri.raw!r} is not a synthetic drive: its objects "
                       "here are not meaningful; run your own model (README, 'Bring your own model')")
            log.warning("%s", warning)
            details[camera.name] = warning
        return details

    def _batch_size(self, pipeline: Pipeline) -> int:
        """[model] batch, or one frame per camera; refused where the model's fixed batch is smaller."""
        if len(self.cameras) > 1 and getattr(pipeline.engine, "stateful", False):
            raise ConfigError(f"{pipeline.engine.name} learns one background from the frames it sees, so it "
                              f"cannot serve {len(self.cameras)} cameras", "run one node per camera with it")
        wanted, fixed = self.config.model.batch, pipeline.max_batch
        if wanted and fixed is not None and wanted > fixed:
            raise ConfigError(f"[model] batch = {wanted} is larger than the fixed batch {fixed} of "
                              f"{pipeline.card.onnx.name if pipeline.card.onnx else pipeline.engine.name}",
                              f"use batch = {fixed} (or 0), or export the model with a dynamic batch axis")
        # 0: a frame per camera where the engine gains from batches (GPUs), else one by one (CPU)
        batch = wanted or (len(self.cameras) if getattr(pipeline.engine, "batches_well", True) else 1)
        return min(batch, fixed) if fixed is not None else batch

    def _open_sources(self) -> None:
        """Open every camera; one that fails is retried by its capture thread unless it is required."""
        for camera in self.cameras:
            try:
                camera.source.open()
                camera.opened = True
            except (SourceError, SourceLost) as exc:
                if camera.camera.required or not getattr(exc, "retry_helps", True):
                    raise
                log.warning("camera %s: %s; the others start, it is retried", camera.name, exc)
                camera.lost_at_start(str(exc))
                self._camera_status(camera, "source_lost", str(exc))
        if not any(c.opened for c in self.cameras):
            raise SourceError(f"none of the cameras {', '.join(c.name for c in self.cameras)} could be opened",
                              "check their URIs (see the warnings above)")

    def _show_replay_progress(self) -> None:
        """Lossless replays (every camera at --rate 0): a progress bar over all their frames."""
        if all(not c.source.live and c.camera.rate == 0 for c in self.cameras):
            lengths = [getattr(c.source, "length", None) for c in self.cameras]
            n = len(self.cameras)
            self.ops.replaying(sum(lengths) if all(lengths) else None,  # type: ignore[arg-type]
                               self.config.run.max_frames * n)

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

    def _start_capture(self, pipeline: Pipeline) -> None:
        self._captured = True
        for camera in self.cameras:
            camera.start_capture(pipeline, max_frames=self.config.run.max_frames, backoff=self.parts.backoff,
                                 on_change=self._doorbell.ring)

    def _stop_capture(self) -> None:
        for camera in self.cameras:
            camera.stop_capture()
        self._abandon_in_flight()
        for camera in self.cameras:
            camera.join_capture()

    def _announce_end(self) -> None:
        """The last status of each camera (why the run ended) and the last stats, after capture has stopped."""
        for camera in self.cameras:
            for detail in camera.take_skipped():
                camera.errors.add(detail)
            self._publish_errors(camera, camera.errors.flush())  # so the run's `errors` add up to its failed frames
            camera.take_source_events()
            capture = camera.capture
            if capture is not None and capture.error is not None:
                self._camera_status(camera, "error", str(capture.error))
        detail = self.cameras[0].source_state.value if self._captured else "not_started"
        self.ops.state("stopped", detail)
        for camera in self.cameras:
            self._camera_status(camera, "stopped", camera.source_state.value if self._captured else "not_started")
            self.parts.publisher.publish_stats(camera.stats(), camera.name)

    def _engine_detail(self) -> str:
        """Which engine serves while the lifecycle upgrades it ("" without a lifecycle)."""
        lifecycle = self.parts.engine_lifecycle
        return lifecycle.detail() if lifecycle is not None else ""

    def _engine_news(self, pipeline: Pipeline) -> None:
        """The engine lifecycle's one-off statuses; after a swap, metadata naming the new engine."""
        lifecycle = self.parts.engine_lifecycle
        for event in lifecycle.take_events() if lifecycle is not None else ():
            if event.swapped:
                for camera in self.cameras:
                    self.parts.publisher.publish_metadata(self._metadata(pipeline, camera), camera.name)
            self._status(event.state, event.detail)

    def _work(self, pipeline: Pipeline, batch: int) -> None:
        """The output loop: decode, track, publish, record; beats status and stats meanwhile."""
        publisher, clock = self.parts.publisher, self.parts.clock
        beat_ns, stats_ns = int(self.config.run.heartbeat_interval_s * 1e9), int(self.config.run.stats_interval_s * 1e9)
        self._inference = InferenceThread([c.lane() for c in self.cameras], pipeline, self._doorbell, batch=batch,
                                          batch_timeout_ns=int(self.config.model.batch_timeout_ms * 1e6))
        self._inference.start()
        # run() has just published "ready": the next status is a change or the next beat, not a copy
        next_beat, next_stats = clock() + beat_ns, clock()
        stopping = False
        while True:
            if self._stop.is_set() and not stopping:
                stopping = True
                self.ops.stopping()
                for camera in self.cameras:  # the inference stage finishes what the slots hold, then ends
                    camera.stop_capture()
            self.ops.tick()
            now = clock()
            self._engine_news(pipeline)  # before the heartbeat: a switch is announced before it is repeated
            beat = now >= next_beat
            lost = []
            for camera in self.cameras:
                for detail in camera.take_skipped():  # an image a replay could not decode: a failed frame too
                    self._publish_errors(camera, camera.errors.add(detail))
                self._publish_errors(camera, camera.errors.due())  # errors counted since the last error status
                state, detail = camera.operational_state(now)
                detail = detail or (self._engine_detail() if state == "ready" else "")
                if state != camera.state or beat:  # a change is published at once, then repeated by the heartbeat
                    camera.state = state
                    self._camera_status(camera, state, detail)
                if state == "source_lost":
                    lost.append(detail if len(self.cameras) == 1 else f"{camera.name} ({detail})")
            node_state = "source_lost" if lost else "ready"
            if node_state != self.state or beat:  # the operators' state: ready while every camera is
                self.state = node_state
                self.ops.state(node_state, "; ".join(lost))
            if beat:
                next_beat = now + beat_ns
            if now >= next_stats:
                for camera in self.cameras:
                    publisher.publish_stats(camera.stats(), camera.name)
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
                self._report_frame_error(self.cameras[item.lane], item.frame, item.error)
                continue
            self._output(self.cameras[item.lane], item, pipeline)

    def _output(self, camera: CameraRun, item: InferredFrame, pipeline: Pipeline) -> None:
        frame, stamps = item.frame, item.stamps
        publisher, recorder = self.parts.publisher, self.parts.recorder
        try:
            segmentation = pipeline.decode(item.inferred, stamps)
        except PerceptionError as exc:
            camera.counters.add_dropped(DROP_ERROR)
            self._report_frame_error(camera, frame, exc)
            return
        segmentation = camera.tracker.update(segmentation, frame.stamp_ns)
        for report in camera.tracker.reports.take():  # a clock step, NaN boxes, a capped frame
            self._camera_status(camera, "error" if report.error else camera.state,
                                f"frame {frame.index}: {report.detail}" if report.error else report.detail)
        result = FrameResult(camera=camera.name, frame_index=frame.index, stamp_ns=frame.stamp_ns,
                             width=frame.width, height=frame.height, segmentation=segmentation,
                             stamps=stamps.as_dict())
        publisher.service()  # a subscriber that just joined gets the metadata before its first frame
        if camera.preview.due():  # before its result, so a viewer has the picture when the masks arrive
            publisher.publish_image(frame.index, frame.stamp_ns, frame.width, frame.height,
                                    camera.preview.encode(frame.image), camera=camera.name)
        published = publisher.publish_frame(result)
        camera.published += 1
        camera.counters.add_processed()
        stage_stamps = {**result.stamps, Stage.ENCODE.value: published.encode_ns,
                        Stage.PUBLISH.value: published.publish_ns}
        camera.latency.add(stage_stamps)
        self.latency.add(stage_stamps)
        self.ops.frame(stage_stamps, camera.name)
        self.ops.result(frame.image, result, pipeline.card.class_names)
        if recorder is not None:
            recorder.record_frame(frame, camera.name)
            recorder.record_result(result, pipeline.card.class_names)

    def _report_frame_error(self, camera: CameraRun, frame: Frame[Prepared], error: PerceptionError) -> None:
        """One bad frame (e.g. NaN outputs) is dropped and counted; the stream goes on. Statuses are
        rate-limited (runtime.error_rate): at most one a second, carrying how many frames failed."""
        if str(error) != camera.last_error:
            log.warning("%sframe %d: %s", f"camera {camera.name}: " if len(self.cameras) > 1 else "",
                        frame.index, error, extra={"frame_index": frame.index})
            camera.last_error = str(error)
        self._publish_errors(camera, camera.errors.add(f"frame {frame.index}: {error}"))

    def _publish_errors(self, camera: CameraRun, report: ErrorReport | None) -> None:
        if report is not None:
            self.parts.publisher.publish_status("error", camera.counters.snapshot(), report.text(), camera.name,
                                                errors=report.count)

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
                self.cameras[item.lane].counters.add_dropped(DROP_SHUTDOWN)
            elif isinstance(item, StageEnded):
                return

    def _status(self, state: str, detail: str = "", details: dict[str, str] | None = None) -> None:
        """A node-wide state, on every camera's status topic (details: a camera's own detail instead);
        operational ones are repeated by the heartbeat."""
        details = details or {}
        if state in _HEARTBEAT_STATES:
            self.state = state
            self.ops.state(state, detail or "; ".join(details.values()))
        for camera in self.cameras:
            if state in _HEARTBEAT_STATES:
                if camera.state == "source_lost":  # a camera that failed to open keeps saying so
                    self._camera_status(camera, camera.state, camera.source_detail)
                    continue
                camera.state = state
            self._camera_status(camera, state, details.get(camera.name, detail))

    def _camera_status(self, camera: CameraRun, state: str, detail: str) -> None:
        self.parts.publisher.publish_status(state, camera.counters.snapshot(), detail, camera.name)
        self.ops.camera_state(camera.name, state, detail)

    def _sample(self) -> NodeSample:
        """For the metrics scrape (another thread) and the status line: counts are locked, the rest is reads."""
        inference, publisher = self._inference, self.parts.publisher
        queues = {"capture": sum(c.capture.slot.depth for c in self.cameras if c.capture),
                  "inference": inference.handoff.qsize() if inference else 0}
        subscriptions = {k.value: n for k, n in dict(publisher.open_subscriptions).items()}
        cameras = {c.name: NodeSample(c.counters.snapshot(), c.latency.snapshot(),
                                      {"capture": c.capture.slot.depth if c.capture else 0}, {},
                                      c.capture.reconnects if c.capture else 0, c.state) for c in self.cameras}
        return NodeSample(combined_counters(self.cameras), self.latency.snapshot(), queues, subscriptions,
                          sum(c.capture.reconnects for c in self.cameras if c.capture), cameras=cameras)

    def _metadata(self, pipeline: Pipeline, camera: CameraRun) -> dict[str, Any]:
        card = pipeline.card
        self.ops.describe({"engine": pipeline.engine.name, "model": card.name, "source": camera.source.uri.raw,
                           "precision": self.config.model.precision, "version": __version__}, camera.name)
        return {
            "camera": camera.name,
            "cameras": [c.name for c in self.cameras],
            "source": camera.source.uri.raw,
            "engine": pipeline.engine.name,
            "model": card.to_dict(),
            "class_names": {c.id: c.name for c in card.classes},
            "versions": {"perception": __version__},
        }


def _close_parts(parts: NodeParts) -> None:
    parts.publisher.close()
    if parts.recorder is not None:
        parts.recorder.close()


def _sources_by_camera(config: NodeConfig, parts: NodeParts) -> list[Any]:
    names = [c.name for c in config.cameras]
    if isinstance(parts.source, dict):
        if sorted(parts.source) != sorted(names):
            raise ConfigError(f"the node's parts have sources for {sorted(parts.source)}, its cameras are {names}",
                              "give one source per camera, by name")
        return [parts.source[n] for n in names]
    if len(names) != 1:
        raise ConfigError(f"the node has cameras {names} but its parts give one source",
                          "give the parts a {name: source} map")
    return [parts.source]
