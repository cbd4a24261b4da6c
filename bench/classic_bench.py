"""The classic segmenters on one core: time per 640x360 frame by stage, and the motion card's PQ
on the held-out static-camera scenes, next to the shipped network's time on the same frames.

    python bench/classic_bench.py [--seeds 41 42 43 44] [--frames 150] [--json]

Everything runs with OpenCV on one thread and ONNX Runtime on one thread (the "one core" of the
target). Timings are wall-clock (time.perf_counter) around each stage of Pipeline's own calls,
plus the calling thread's CPU time per frame (time.thread_time: what one core spends on it, which
neighbours on a shared machine do not inflate the way they inflate wall-clock time); the frames
are rendered first, so rendering is not timed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.core.frame import StageStamps
from perception.evaluation.runner import evaluate_scenes
from perception.inference.engine import EngineOptions
from perception.runtime.pipeline import Pipeline, PipelineSpec
from perception.synth.classes import CLASS_NAMES
from perception.synth.static_scene import StaticScene

ROOT = Path(__file__).resolve().parent.parent
CARDS = ("classic-motion", "classic-color", "classic-region")


def _ms(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000
    return {"median_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "mean_ms": round(float(a.mean()), 3)}


def _timed(pipeline: Pipeline, scenes: list[list[np.ndarray]], skip: int) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {"preprocess": [], "segment": [], "decode": [], "total": [], "total_cpu": []}
    for frames in scenes:
        pipeline.reset()
        for i, bgr in enumerate(frames):
            cpu = time.thread_time()
            t0 = time.perf_counter()
            prepared = pipeline.prepare(bgr)
            t1 = time.perf_counter()
            inferred = pipeline.run_engine(prepared, StageStamps())
            t2 = time.perf_counter()
            pipeline.decode(inferred, StageStamps())
            t3 = time.perf_counter()
            cpu = time.thread_time() - cpu
            if i >= skip:  # warm-up frames only collect; they say nothing of the steady cost
                for name, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0, cpu), strict=True):
                    stages[name].append(value)
    return {name: _ms(values) for name, values in stages.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[41, 42, 43, 44])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rendered = [[(f.bgr, f.truth) for f in StaticScene(seed, args.frames)] for seed in args.seeds]
    images = [[bgr for bgr, _ in scene] for scene in rendered]
    results: dict[str, Any] = {"frames": f"{len(args.seeds)} x {args.frames} at 640x360", "seeds": args.seeds,
                                  "opencv": cv2.__version__, "cpu": platform.processor() or platform.machine()}
    for name in CARDS:
        path = ROOT / "engines" / f"{name}.toml"
        if not path.is_file():
            continue
        try:
            pipeline = Pipeline.open(PipelineSpec(card=path))
        except Exception as exc:  # e.g. the region method's optional extra is not installed
            results[name] = {"skipped": str(exc)}
            continue
        with pipeline:
            skip = int(pipeline.card.params.get("warmup_frames", 0)) if pipeline.card.method == "motion" else 0
            entry: dict[str, Any] = {"input": f"{pipeline.card.input.width}x{pipeline.card.input.height}",
                                        "timing": _timed(pipeline, images, skip)}
            if pipeline.card.method == "motion":
                report = evaluate_scenes(pipeline.card, pipeline.process, rendered, reset=pipeline.reset,
                                         unscored=skip, truth_names=CLASS_NAMES).to_dict()
                entry["pq"] = {"things": report["things"], "per_class": {
                    k: v for k, v in report["per_class"].items() if k in ("person", "car")}}
            results[name] = entry
    spec = PipelineSpec(card=ROOT / "engines" / "panoptic-tiny.toml", options=EngineOptions(threads=1))
    with Pipeline.open(spec) as network:
        network.warm_up(5)
        results["panoptic-tiny (network, 1 ORT thread)"] = {"input": "320x192",
                                                            "timing": _timed(network, images, 0)}
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"{results['frames']}, seeds {args.seeds}, OpenCV {cv2.__version__}, one thread")
    for name, entry in results.items():
        if not isinstance(entry, dict):
            continue
        if "skipped" in entry:
            print(f"{name:<40} skipped: {entry['skipped']}")
            continue
        timing = entry["timing"]
        row = "  ".join(f"{stage} {t['median_ms']:.2f}" for stage, t in timing.items())
        print(f"{name:<40} {entry['input']:>8}  median ms: {row}  (total p90 {timing['total']['p90_ms']:.2f})")
        if "pq" in entry:
            things = entry["pq"]["things"]
            print(f"{'':<40} things PQ {things['pq']:.1f}  SQ {things['sq']:.1f}  RQ {things['rq']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
