"""The contenders the benchmarks time: the whole node in lock-step, and the bare engine loop.

The node runs with a subscriber in its own process, as planners run it, publishing over ipc.
Both report wall and process CPU time; CPU per frame is taken from the difference between a
short and a long run, so start-up (model load, warm-up) cancels out.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception.capture.source import open_source
from perception.core.errors import PerceptionError
from perception.inference.engine import EngineOptions, open_engine
from perception.models.card import load_card
from perception.models.preprocess import Preprocessor
from perception.runtime.config import DEFAULT_LAUNCH, NodeConfig, load_launch, override
from perception.runtime.node import Node, RunReport

_COUNTER = """
import sys, time
from perception.wire.subscriber import Subscriber
n, idle = 0, time.monotonic() + 60.0  # the first frame may take the node's start-up
with Subscriber(sys.argv[1], "cam0", topics=("frame",), rcvhwm=100000, eager=False) as sub:
    print("ready", flush=True)
    while time.monotonic() - idle < 1.0:
        if sub.recv(timeout=0.2) is not None:
            n, idle = n + 1, time.monotonic()
print(n, flush=True)
"""


class BenchError(PerceptionError):
    """A benchmark cannot run as asked (missing optional package, video, or a failed contender)."""


@dataclass(frozen=True)
class Timed:
    frames: int
    wall_s: float
    cpu_s: float
    extra: dict[str, Any]

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s


def bench_config(source: str, frames: int, threads: int = 2, rate: float = 0.0) -> NodeConfig:
    """The bundled launch file, lock-step by default, publishing on a private ipc endpoint."""
    config = load_launch(DEFAULT_LAUNCH)
    config = override(config, "source", uri=source, rate=rate)
    config = override(config, "model", threads=threads)
    config = override(config, "publish", endpoint=f"ipc://{tempfile.mkdtemp()}/bench.sock", wait_subscribers=1,
                      sndhwm=100000)
    return override(config, "run", max_frames=frames, summary=False)


def read_frames(uri: str, n: int) -> list[np.ndarray]:
    source = open_source(uri)
    source.open()
    frames: list[np.ndarray] = []
    try:
        while len(frames) < n and (item := source.read()) is not None:
            frames.append(item[0])
    finally:
        source.close()
    return frames


class BareEngine:
    """`engine.infer` alone in a loop on preprocessed tensors: what the node is measured against."""

    def __init__(self, config: NodeConfig, frames: list[np.ndarray]) -> None:
        card = load_card(config.model.card)
        self.name = card.input.name
        self.engine = open_engine(config.model.engine, card.model_file,
                                  EngineOptions(threads=config.model.threads, spin=config.model.spin))
        pre = Preprocessor(card.input)
        self.tensors = [pre(f)[0] for f in frames]  # preprocessing excluded: the engine alone
        for tensor in self.tensors[:3]:
            self.engine.infer({self.name: tensor})

    def run(self, frames: int | None = None) -> Timed:
        tensors = self.tensors[:frames] if frames else self.tensors
        cpu, start = time.process_time(), time.perf_counter()
        for tensor in tensors:
            self.engine.infer({self.name: tensor})
        return Timed(len(tensors), time.perf_counter() - start, time.process_time() - cpu, {})

    def close(self) -> None:
        self.engine.close()


def run_node(config: NodeConfig) -> Timed:
    """The whole node, timed from start to its last publish, with a counting subscriber process."""
    counter = subprocess.Popen([sys.executable, "-c", _COUNTER, config.publish.endpoint], stdout=subprocess.PIPE,
                               text=True)
    assert counter.stdout is not None
    if counter.stdout.readline().strip() != "ready":
        counter.kill()
        raise BenchError("the bench's subscriber process did not start", "check that `perception` imports in "
                         f"{sys.executable}")
    node = Node.from_config(config)
    cpu, start = time.process_time(), time.perf_counter()
    report: RunReport = node.run()
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    received = int(counter.communicate(timeout=60)[0].strip() or 0)
    return Timed(report.published, wall, used, {"latency": report.latency, "received": received,
                                                 "counters": report.counters})
