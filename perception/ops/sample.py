"""What the node shows its operators at one instant: read by the metrics scrape, STATUS= and the live line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeSample:
    counters: Mapping[str, Any]  # FrameCounters.snapshot(): read, processed, dropped {cause: n}
    latency: Mapping[str, Any]  # LatencyBook.snapshot(): fps, stages, end_to_end (ns percentiles)
    queues: Mapping[str, int] = field(default_factory=dict)  # queue name -> frames waiting
    subscriptions: Mapping[str, int] = field(default_factory=dict)  # topic kind -> open subscriptions
    reconnects: int = 0  # times the source was reopened after a loss
    state: str = ""  # a camera's own state (ready, source_lost, ...); "" in the node-wide sample
    # the node's cameras, each its own sample (counters, latency, its capture queue, reconnects, state);
    # empty: the sample is the one camera's
    cameras: Mapping[str, NodeSample] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return int(sum(self.counters.get("dropped", {}).values()))

    @property
    def fps(self) -> float:
        return float(self.latency.get("fps", 0.0))

    def end_to_end_ms(self, key: str) -> float:
        return float(self.latency.get("end_to_end", {}).get(key, 0)) / 1e6

    def summary(self, state: str) -> str:
        """'ready: 9.9 fps, e2e p50 41.2 ms p99 60.3 ms, processed 120, dropped 0'"""
        return (f"{state}: {self.fps:.1f} fps, e2e p50 {self.end_to_end_ms('p50_ns'):.1f} ms "
                f"p99 {self.end_to_end_ms('p99_ns'):.1f} ms, processed {self.counters.get('processed', 0)}, "
                f"dropped {self.dropped}")
