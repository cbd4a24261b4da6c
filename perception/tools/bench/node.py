"""`perception bench node`: node throughput against a bare ONNX Runtime loop on the same model and threads.

Replays the bundled drive lock-step (rate 0, lossless) through the whole node (capture thread,
preprocess, engine, decode, tracker, zstd encode, ZeroMQ publish to a subscriber process) and
compares its steady publish rate (the latency window's fps, so start-up is not counted) with
`engine.infer` alone on the same preprocessed frames. The two alternate, >= 3 repetitions.
Figure: `ratio` = node fps / bare fps, median over repetitions. Target >= 0.95.
"""

from __future__ import annotations

from perception.core.frame import STAGES
from perception.runtime.config import DEFAULT_LAUNCH, load_launch
from perception.tools.bench.contenders import BareEngine, bench_config, read_frames, run_node
from perception.tools.bench.report import Outcome, spread


def run(quick: bool) -> Outcome:
    frames, repetitions, threads = (8, 3, 2) if quick else (200, 3, 2)
    source = load_launch(DEFAULT_LAUNCH).source.uri
    config = bench_config(source, frames, threads)
    bare = BareEngine(config, read_frames(source, frames))
    ratios, node_fps, bare_fps, rows = [], [], [], []
    try:
        for rep in range(repetitions):
            b = bare.run()
            n = run_node(config)
            fps = float(n.extra["latency"]["fps"]) or n.fps
            bare_fps.append(b.fps)
            node_fps.append(fps)
            ratios.append(fps / b.fps)
            latency = n.extra["latency"]
            row = {"repetition": rep, "bare fps": b.fps, "node fps": fps, "ratio": fps / b.fps,
                   "received": f"{n.extra['received']}/{n.frames}"}
            for stage in STAGES[1:]:
                row[f"{stage.value} ms"] = latency["stages"][stage.value]["p50_ns"] / 1e6
            if "service" in latency:
                row["service ms"] = latency["service"]["p50_ns"] / 1e6
            row["end_to_end ms"] = latency["end_to_end"]["p50_ns"] / 1e6
            rows.append(row)
    finally:
        bare.close()
    ratio = spread(ratios)
    return Outcome(
        {"ratio": ratio["median"], "ratio_p90": ratio["p90"], "node_fps": spread(node_fps)["median"],
         "bare_fps": spread(bare_fps)["median"], "target": 0.95},
        rows,
        {"source": source, "frames": frames, "repetitions": repetitions, "threads": threads,
         "model": config.model.card.name},
        ["stage columns are per-stage p50 of the last repetition window (CLOCK_MONOTONIC); end_to_end includes "
         "queueing in the lossless slot, service is dequeue -> publish"])
