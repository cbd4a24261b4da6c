"""Trackers side by side: cost per frame at 50 objects on one core, and IDF1 on the held-out drives.

Ours (`bytetrack`, box and mask IoU; `iou`) against supervision's ByteTrack (the `[bench]` extra,
supervision < 0.31) on the same detections. Cost: the process is pinned to one CPU with numpy's
BLAS single-threaded; 50 objects moving at constant velocity plus 1 px box noise, 10 fps stamps;
each tracker's per-frame call timed with CLOCK_MONOTONIC (ours both on boxes, `step`, and on a
segments table with its id map, `update`, which also measures centroids). IDF1: the eight
held-out synthetic drives of `perception eval --tracking`, ground-truth masks as detections
(all frames, 30% dropped, half rate) and the shipped model's output; supervision is told the
drive's frame rate (it counts frames; halved for the half-rate replay).

    python bench/tracking_bench.py [--frames N] [--objects N] [--skip-idf1]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from perception.core.segmentation import Segmentation
from perception.evaluation.tracking import VARIANTS, load_drive, score
from perception.tracking.bytetrack import ByteTracker
from perception.tracking.detections import Detections
from perception.tracking.iou import IouTracker

FPS = 10.0


def _supervision() -> Any:
    warnings.filterwarnings("ignore", category=FutureWarning)  # ByteTrack is deprecated there since 0.28
    import supervision as sv

    return sv


class SupervisionTracker:
    """supervision's ByteTrack on a segments table's things (class-agnostic, counts frames)."""

    def __init__(self, fps: float = FPS) -> None:
        self.tracker = _supervision().ByteTrack(frame_rate=fps)

    def update(self, segmentation: Segmentation, stamp_ns: int) -> Segmentation:
        sv = _supervision()
        seg = segmentation.segments
        rows = np.flatnonzero(seg.is_thing)
        detections = sv.Detections(xyxy=seg.bboxes[rows].astype(np.float32), confidence=seg.scores[rows],
                                   class_id=seg.class_ids[rows], data={"row": rows})
        tracked = self.tracker.update_with_detections(detections)
        ids = np.zeros(len(seg), np.uint32)
        if len(tracked):
            ids[tracked.data["row"]] = tracked.tracker_id
        return Segmentation(segmentation.id_map, seg.with_instance_ids(ids))


def moving_objects(frames: int, n: int, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 1200, (n, 2))
    velocity = rng.normal(0, 40, (n, 2))  # px/s
    size = rng.uniform(12, 60, (n, 2))
    out = []
    for k in range(frames):
        centre = start + velocity * k / FPS
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1) + rng.normal(0, 1.0, (n, 4))
        out.append((boxes, round(k * 1e9 / FPS)))
    return out


def as_segmentation(boxes: np.ndarray, scores: np.ndarray, width: int = 1280, height: int = 1280) -> Segmentation:
    id_map = np.zeros((height, width), np.uint16)
    for i, (x0, y0, x1, y1) in enumerate(np.clip(boxes, 0, [width, height, width, height]).round().astype(int), 1):
        id_map[y0:y1, x0:x1] = i
    n = len(boxes)
    return Segmentation.from_id_map(id_map, np.zeros(n, np.int64), scores, np.ones(n, bool))


def timed(call: Any, inputs: list[Any]) -> float:
    """Median ms per call over the inputs (after the first tenth as warm-up)."""
    times = []
    for args in inputs:
        t0 = time.perf_counter_ns()
        call(*args)
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times[len(times) // 10:])) / 1e6


def cost(frames: int, objects: int) -> dict[str, float]:
    data = moving_objects(frames, objects)
    scores = np.full(objects, 0.9)
    segs = [(as_segmentation(b, scores), s) for b, s in data]
    out = {}
    ours = ByteTracker()
    out["bytetrack step (boxes)"] = timed(lambda b, s: ours.step(Detections.of(b, scores, np.zeros(len(b))), s),
                                          data)
    ours_seg = ByteTracker()
    out["bytetrack update (segments + id map)"] = timed(ours_seg.update, segs)
    mask = ByteTracker(match="mask")
    out["bytetrack mask update"] = timed(mask.update, segs)
    iou = IouTracker()
    out["iou update"] = timed(iou.update, segs)
    sv = _supervision()
    peer = sv.ByteTrack(frame_rate=FPS)
    out["supervision ByteTrack (boxes)"] = timed(
        lambda b, s: peer.update_with_detections(sv.Detections(xyxy=b.astype(np.float32), confidence=scores,
                                                               class_id=np.zeros(len(b), int))), data)
    return out


def idf1_table() -> list[tuple[str, str, str, float, float, int]]:
    from perception.commands.eval import DEFAULT_SEEDS, TRACKING_FPS, TRACKING_FRAMES, TRACKING_MIN_AREA
    from perception.record.drive import read_drive
    from perception.runtime.config import DEFAULT_CARD
    from perception.runtime.pipeline import Pipeline, PipelineSpec
    from perception.synth.drivefile import cached_drive

    seeds = list(DEFAULT_SEEDS)
    paths = [cached_drive(s, TRACKING_FRAMES, TRACKING_FPS) for s in seeds]

    def frames(path: Any) -> Any:
        return ((f.stamp_ns, f.bgr, f.ground_truth) for f in read_drive(path))

    truth = [load_drive(frames(p), None) for p in paths]
    with Pipeline.open(PipelineSpec(card=DEFAULT_CARD)) as pipeline:
        model = [load_drive(frames(p), pipeline.process) for p in paths]
    trackers: dict[str, Any] = {"bytetrack": ByteTracker, "bytetrack-mask": lambda: ByteTracker(match="mask"),
                                "supervision ByteTrack": SupervisionTracker}
    rows = []
    for source, drives, variants in (("ground truth", truth, VARIANTS), ("model", model, ("all frames",))):
        for variant in variants:
            fps = TRACKING_FPS / 2 if variant == "half rate" else TRACKING_FPS
            for name, make in trackers.items():
                factory = (lambda fps=fps: SupervisionTracker(fps)) if name.startswith("supervision") else make
                started = time.perf_counter()
                m = score(drives, factory, variant, seeds, TRACKING_MIN_AREA)
                frames_seen = sum(len(d) for d in drives) * (0.5 if variant == "half rate" else
                                                            0.7 if variant == "30% dropped" else 1.0)
                ms = (time.perf_counter() - started) * 1e3 / frames_seen
                rows.append((source, variant, name, m["idf1"], m["hota"], m["num_switches"]))
                print(f"{source:12s} {variant:12s} {name:22s} IDF1 {m['idf1']:.3f} HOTA {m['hota']:.3f} "
                      f"IDsw {m['num_switches']:4d}  ({ms:.2f} ms/frame incl. metrics)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--skip-idf1", action="store_true")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy "
          f"{np.__version__}, supervision {_supervision().__version__}, one core")
    print(f"\ncost per frame, {args.objects} objects, {args.frames} frames (median ms)")
    results = cost(args.frames, args.objects)
    base = results["supervision ByteTrack (boxes)"]
    for name, ms in results.items():
        print(f"  {name:40s} {ms:7.3f} ms  ({ms / base:.2f}x supervision)")
    if not args.skip_idf1:
        print("\nIDF1 on the held-out drives (true things under 100 px ignored)")
        idf1_table()


if __name__ == "__main__":
    main()
