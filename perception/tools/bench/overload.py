"""`perception bench overload`: a live-rate source at twice what the node sustains.

First the node's sustained rate is measured lock-step; then the bundled drive, looped, is
replayed in real time at twice that rate (the node drops what it cannot take, counted as
`overwritten`). Figure: capture -> publish p99 over inference p50, sampled over the run in
windows; flat when the last window's p99 is close to the first's. Target <= 2.0.
"""

from __future__ import annotations

import threading
from typing import Any

from perception.runtime.config import override
from perception.runtime.node import Node
from perception.synth.drivefile import cached_drive
from perception.tools.bench.contenders import bench_config, run_node
from perception.tools.bench.report import Outcome

DRIVE_FPS = 10.0


def run(quick: bool) -> Outcome:
    duration_s, windows = (4.0, 2) if quick else (300.0, 10)
    drive = cached_drive(7, 300, DRIVE_FPS)
    sustained = run_node(bench_config(f"mcap:{drive}", 20 if quick else 200)).extra["latency"]["fps"]
    rate = 2 * sustained / DRIVE_FPS
    config = bench_config(f"mcap:{drive}?loop=1", 0, rate=rate)
    config = override(config, "publish", wait_subscribers=0)
    config = override(config, "run", latency_window=max(30, int(sustained * duration_s / windows)))
    node = Node.from_config(config)
    samples: list[dict[str, Any]] = []
    done = threading.Event()

    def sample() -> None:
        for _ in range(windows):
            if done.wait(duration_s / windows):
                return
            samples.append(node.latency.snapshot())
        node.stop()

    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
    sampler.start()
    report = node.run()
    done.set()
    sampler.join()
    rows = []
    for i, snap in enumerate(samples):
        inference = snap["stages"]["inference"]["p50_ns"] or 1
        p99 = snap["end_to_end"]["p99_ns"]
        rows.append({"window": i, "fps": snap["fps"], "end_to_end p50 ms": snap["end_to_end"]["p50_ns"] / 1e6,
                     "end_to_end p99 ms": p99 / 1e6, "inference p50 ms": inference / 1e6,
                     "p99/inference p50": p99 / inference})
    ratios = [row["p99/inference p50"] for row in rows] or [0.0]
    dropped = report.counters.get("dropped", {})
    return Outcome({"ratio": ratios[-1], "ratio_max": max(ratios), "flatness": ratios[-1] / max(ratios[0], 1e-9),
                    "sustained_fps": sustained, "offered_fps": 2 * sustained, "published": report.published,
                    "dropped": dropped, "target": 2.0},
                   rows, {"duration_s": duration_s, "windows": windows, "drive": drive.name, "rate": rate},
                   ["flatness = last window's ratio / first window's (1.0 = flat)"])
