"""`perception bench NAME`: the project's benchmarks, one module each, with one report format.

Each module has `run(quick: bool) -> Outcome`; report.measure wraps it with the machine, the load
average before and after, and versions. Keys of the --json object are listed in docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from perception.tools.bench.report import measure

BENCHMARKS: dict[str, str] = {
    "node": "node/bare engine throughput in lock-step (target ratio >= 0.95)",
    "overhead": "CPU outside inference over inference CPU at 640x360 and 1280x720 (target <= 0.10)",
    "overload": "a live source at twice the sustained rate: end-to-end p99 over inference p50 (target <= 2.0)",
    "wire": "1280x720 id map with 50 objects, process to process over ipc and tcp (target <= 3 ms, <= 5%)",
    "scaling": "ms and CPU per frame by source size, and YOLO-seg decode by object count",
    "peers": "YOLO-seg ONNX on 300 frames of vtest.avi: Ultralytics' predict vs our node vs the bare engine",
}


def run_benchmark(name: str, quick: bool) -> dict[str, Any]:
    module = importlib.import_module(f"perception.tools.bench.{name}")
    return measure(name, quick, module.run)
