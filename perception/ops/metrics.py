"""Prometheus metrics of one camera's node, through prometheus-client, on a registry of its own.

Latency histograms are observed per published frame; counters, queue depths and
subscriptions are read from the node at scrape time (a custom collector), so the node's own
FrameCounters stay the single source of those numbers. Every series has a `camera` label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

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
    def __init__(self, camera: str, probe: Probe, state: Callable[[], str]) -> None:
        self.camera = camera
        self.registry = CollectorRegistry(auto_describe=True)
        self._stage = Histogram("perception_stage_latency_seconds",
                                "Time from the previous stage's end to this stage's end, per published frame",
                                ["camera", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._end_to_end = Histogram("perception_end_to_end_latency_seconds",
                                     "Capture to publish, per published frame", ["camera"],
                                     buckets=LATENCY_BUCKETS, registry=self.registry)
        self._info = Info("perception_node", "Engine, model and version of the running node", ["camera"],
                          registry=self.registry)
        self.registry.register(_SampleCollector(camera, probe, state))

    def observe(self, stamps: Mapping[str, int]) -> None:
        """One published frame's stage stamps (CLOCK_MONOTONIC ns; capture and publish present)."""
        previous = stamps[Stage.CAPTURE.value]
        for stage in STAGES[1:]:
            now = stamps.get(stage.value)
            if now is None:
                continue
            self._stage.labels(self.camera, stage.value).observe((now - previous) / 1e9)
            previous = now
        self._end_to_end.labels(self.camera).observe(
            (stamps[Stage.PUBLISH.value] - stamps[Stage.CAPTURE.value]) / 1e9)

    def describe(self, info: Mapping[str, str]) -> None:
        self._info.labels(self.camera).info(dict(info))

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SampleCollector(Collector):
    def __init__(self, camera: str, probe: Probe, state: Callable[[], str]) -> None:
        self.camera, self.probe, self.state = camera, probe, state

    def describe(self) -> list[Metric]:
        return []  # names are only known per scrape; no duplicate check needed on our own registry

    def collect(self) -> Iterator[Metric]:
        sample = self.probe()
        cam = self.camera
        counters = sample.counters
        yield _counter("perception_frames_read", "Frames read from the source", cam, counters.get("read", 0))
        yield _counter("perception_frames_processed", "Frames decoded and published", cam,
                       counters.get("processed", 0))
        dropped = CounterMetricFamily("perception_frames_dropped", "Frames dropped, by cause",
                                      labels=["camera", "cause"])
        for cause in ("overwritten", "stale", "error", "shutdown"):  # all causes always present: rate() works
            dropped.add_metric([cam, cause], counters.get("dropped", {}).get(cause, 0))
        for cause, n in counters.get("dropped", {}).items():
            if cause not in ("overwritten", "stale", "error", "shutdown"):
                dropped.add_metric([cam, cause], n)
        yield dropped
        yield _counter("perception_source_reconnects", "Times the source was reopened after a loss", cam,
                       sample.reconnects)
        queues = GaugeMetricFamily("perception_queue_depth", "Frames waiting in each hand-off queue",
                                   labels=["camera", "queue"])
        for name, depth in sample.queues.items():
            queues.add_metric([cam, name], depth)
        yield queues
        subs = GaugeMetricFamily("perception_subscriptions", "Open subscriptions per topic",
                                 labels=["camera", "topic"])
        for kind, n in sample.subscriptions.items():
            subs.add_metric([cam, kind], n)
        yield subs
        fps = GaugeMetricFamily("perception_fps", "Published frames per second over the latency window",
                                labels=["camera"])
        fps.add_metric([cam], sample.fps)
        yield fps
        state = GaugeMetricFamily("perception_node_state", "1 for the node's current state", labels=["camera", "state"])
        current = self.state()
        for name in STATES:
            state.add_metric([cam, name], 1.0 if name == current else 0.0)
        yield state


def _counter(name: str, doc: str, camera: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["camera"])
    family.add_metric([camera], value)
    return family
