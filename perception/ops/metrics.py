"""Prometheus metrics of a node and each of its cameras, through prometheus-client, on a registry of its own.

Latency histograms are observed per published frame; counters, queue depths and
subscriptions are read from the node at scrape time (a custom collector), so the node's own
FrameCounters stay the single source of those numbers. Every series has a `camera` label and
every camera has its own series. What the cameras share (the inference hand-off queue, the
socket's subscriptions) is reported once, under the first camera, so a sum over cameras
stays right.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from perception.core.frame import STAGES, Stage
from perception.ops.sample import NodeSample

# frame-sized buckets: 1 ms .. 1 s
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
STATES = ("starting", "warming_up", "ready", "source_lost", "error", "stopped")

Probe = Callable[[], NodeSample]


class NodeMetrics:
    def __init__(self, cameras: Sequence[str], probe: Probe, state: Callable[[], str]) -> None:
        self.cameras = list(cameras)
        self.camera = self.cameras[0]
        self.registry = CollectorRegistry(auto_describe=True)
        self._stage = Histogram("perception_stage_latency_seconds",
                                "Time from the previous stage's end to this stage's end, per published frame",
                                ["camera", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._end_to_end = Histogram("perception_end_to_end_latency_seconds",
                                     "Capture to publish, per published frame", ["camera"],
                                     buckets=LATENCY_BUCKETS, registry=self.registry)
        self._info = Info("perception_node", "Engine, model and version of the running node", ["camera"],
                          registry=self.registry)
        for camera in self.cameras:  # a camera that has published nothing yet shows 0, not no series
            self._end_to_end.labels(camera)
        self.registry.register(_SampleCollector(self.cameras, probe, state))

    def observe(self, stamps: Mapping[str, int], camera: str | None = None) -> None:
        """One published frame's stage stamps (CLOCK_MONOTONIC ns; capture and publish present)."""
        camera = camera or self.camera
        previous = stamps[Stage.CAPTURE.value]
        for stage in STAGES[1:]:
            now = stamps.get(stage.value)
            if now is None:
                continue
            self._stage.labels(camera, stage.value).observe((now - previous) / 1e9)
            previous = now
        self._end_to_end.labels(camera).observe(
            (stamps[Stage.PUBLISH.value] - stamps[Stage.CAPTURE.value]) / 1e9)

    def describe(self, info: Mapping[str, str], camera: str | None = None) -> None:
        self._info.labels(camera or self.camera).info(dict(info))

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SampleCollector(Collector):
    def __init__(self, cameras: Sequence[str], probe: Probe, state: Callable[[], str]) -> None:
        self.cameras, self.probe, self.state = list(cameras), probe, state

    def describe(self) -> list[Metric]:
        return []  # names are only known per scrape; no duplicate check needed on our own registry

    def collect(self) -> Iterator[Metric]:
        sample = self.probe()
        per_camera = dict(sample.cameras) or {self.cameras[0]: sample}
        first = self.cameras[0]
        read = CounterMetricFamily("perception_frames_read", "Frames read from the source", labels=["camera"])
        processed = CounterMetricFamily("perception_frames_processed", "Frames decoded and published",
                                        labels=["camera"])
        dropped = CounterMetricFamily("perception_frames_dropped", "Frames dropped, by cause",
                                      labels=["camera", "cause"])
        reconnects = CounterMetricFamily("perception_source_reconnects", "Times the source was reopened after a loss",
                                         labels=["camera"])
        queues = GaugeMetricFamily("perception_queue_depth", "Frames waiting in each hand-off queue",
                                   labels=["camera", "queue"])
        fps = GaugeMetricFamily("perception_fps", "Published frames per second over the latency window",
                                labels=["camera"])
        state = GaugeMetricFamily("perception_node_state", "1 for the camera's current state",
                                  labels=["camera", "state"])
        node_state = self.state()
        for cam, own in per_camera.items():
            counters = own.counters
            read.add_metric([cam], counters.get("read", 0))
            processed.add_metric([cam], counters.get("processed", 0))
            causes = dict.fromkeys(("overwritten", "stale", "error", "shutdown"), 0)  # always present: rate() works
            causes.update(counters.get("dropped", {}))
            for cause, n in causes.items():
                dropped.add_metric([cam, cause], n)
            reconnects.add_metric([cam], own.reconnects)
            for name, depth in own.queues.items():
                queues.add_metric([cam, name], depth)
            fps.add_metric([cam], own.fps)
            current = own.state or node_state
            for name in STATES:
                state.add_metric([cam, name], 1.0 if name == current else 0.0)
        for name, depth in sample.queues.items():  # the node's shared queues, once
            if sample.cameras and name not in next(iter(sample.cameras.values())).queues:
                queues.add_metric([first, name], depth)
        subs = GaugeMetricFamily("perception_subscriptions", "Open subscriptions per topic (the node's one socket)",
                                 labels=["camera", "topic"])
        for kind, n in sample.subscriptions.items():
            subs.add_metric([first, kind], n)
        yield from (read, processed, dropped, reconnects, queues, subs, fps, state)
