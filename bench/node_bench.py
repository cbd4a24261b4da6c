"""Node throughput against a bare ONNX Runtime loop on the same model and threads.

Replays a drive lock-step (--rate 0, lossless) through the whole node (capture thread,
preprocess, engine, decode, tracker, zstd encode, ZeroMQ publish to a live subscriber) and
compares its fps with `session.run` alone in a loop. Target: node/bare >= 0.95.

    python bench/node_bench.py [--source URI] [--frames N] [--threads T]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from perception.capture.source import open_source
from perception.commands.run import SWITCH_INTERVAL_S
from perception.core.frame import STAGES
from perception.inference.engine import EngineOptions, open_engine
from perception.models.card import load_card
from perception.models.preprocess import Preprocessor
from perception.runtime.config import NodeConfig, load_launch, override
from perception.runtime.node import Node


def bare_ort_fps(config: NodeConfig, frames: list[np.ndarray]) -> float:
    card = load_card(config.model.card)
    engine = open_engine(config.model.engine, card.model_file, EngineOptions(threads=config.model.threads,
                                                                         spin=config.model.spin))
    pre = Preprocessor(card.input)
    tensors = [pre(f)[0] for f in frames]  # preprocessing excluded: the engine alone
    for t in tensors[:3]:
        engine.infer({card.input.name: t})
    start = time.perf_counter()
    for t in tensors:
        engine.infer({card.input.name: t})
    elapsed = time.perf_counter() - start
    engine.close()
    return len(tensors) / elapsed


def read_frames(uri: str, n: int) -> list[np.ndarray]:
    source = open_source(uri)
    source.open()
    frames: list[np.ndarray] = []
    while len(frames) < n and (item := source.read()) is not None:
        frames.append(item[0])
    source.close()
    return frames


_COUNTER = """
import sys, time
from perception.wire.subscriber import Subscriber
n, idle = 0, time.monotonic() + 60.0  # the first frame may take the node's start-up
with Subscriber(sys.argv[1], "cam0", topics=("frame",), rcvhwm=100000, eager=False) as sub:
    print("ready", flush=True)
    while time.monotonic() - idle < 3.0:
        if sub.recv(timeout=0.2) is not None:
            n, idle = n + 1, time.monotonic()
print(n, flush=True)
"""


def node_run(config: NodeConfig) -> tuple[float, dict[str, object], int]:
    """The node with a subscriber in its own process, as planners run."""
    counter = subprocess.Popen([sys.executable, "-c", _COUNTER, config.publish.endpoint], stdout=subprocess.PIPE,
                               text=True)
    assert counter.stdout is not None
    counter.stdout.readline()
    node = Node.from_config(config)
    start = time.perf_counter()
    report = node.run()
    elapsed = time.perf_counter() - start
    received = int(counter.communicate(timeout=30)[0].strip() or 0)
    return report.published / elapsed, report.latency, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="default: the launch file's source (bundled drive)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # as `perception run` does
    config = load_launch(Path(__file__).resolve().parent.parent / "launch" / "default.toml")
    endpoint = f"ipc://{tempfile.mkdtemp()}/bench.sock"
    config = override(config, "source", uri=args.source or config.source.uri, rate=0.0)
    config = override(config, "model", threads=args.threads)
    config = override(config, "publish", endpoint=endpoint, wait_subscribers=1, sndhwm=100000)
    config = override(config, "run", max_frames=args.frames, summary=False)
    frames = read_frames(config.source.uri, args.frames)
    bare = bare_ort_fps(config, frames)
    fps, latency, received = node_run(config)
    print(f"frames {len(frames)}, threads {args.threads}, model {config.model.card.name}")
    print(f"bare ONNX Runtime loop : {bare:7.1f} fps")
    print(f"node, lock-step        : {fps:7.1f} fps  (ratio {fps / bare:.3f}, received {received})")
    stages: dict[str, dict[str, int]] = latency["stages"]  # type: ignore[assignment]
    print("per-stage median (ms, CLOCK_MONOTONIC):")
    for stage in STAGES[1:]:
        print(f"  {stage.value:<12} {stages[stage.value]['p50_ns'] / 1e6:7.2f}")
    e2e: dict[str, int] = latency["end_to_end"]  # type: ignore[assignment]
    print(f"  {'end_to_end':<12} {e2e['p50_ns'] / 1e6:7.2f}  (includes queueing in the lossless slot)")
    print(f"  (medians over the last {latency['window_frames']} frames of one run)")


if __name__ == "__main__":
    main()
