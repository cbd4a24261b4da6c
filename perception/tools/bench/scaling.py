"""`perception bench scaling`: how the cost grows with the source size and with the number of objects.

1. Source size: the node lock-step at 640x360, 1280x720 and 1920x1080 synthetic sources (the
   shipped panoptic-tiny model): wall ms and this process's CPU ms per frame (CPU from a short and
   a long run, so start-up cancels), with the decode stage's p50.
2. Objects: the YOLO-seg decoder alone (no engine) on a 640x640 letterbox of a 1280x720 source,
   80 classes, 8400 anchors, with 0 / 10 / 50 / 200 objects above threshold (5 overlapping boxes
   each, so NMS keeps one), then the id map encoded once (zstd), ms per frame.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from perception.core.result import FrameResult
from perception.inference.engine import TensorSpec
from perception.models.card import ClassInfo, InputSpec, ModelCard
from perception.models.decoders.yolo_seg import YoloSegDecoder
from perception.models.preprocess import Preprocessor
from perception.tools.bench.contenders import bench_config, read_frames, run_node
from perception.tools.bench.report import Outcome, spread
from perception.wire.codec import FrameEncoder

SIZES = ((640, 360), (1280, 720), (1920, 1080))
OBJECTS = (0, 10, 50, 200)

NC, NM, ANCHORS, NET = 80, 32, 8400, 640


def make_card(params: dict[str, object]) -> ModelCard:
    classes = tuple(ClassInfo(i, f"class_{i}", True) for i in range(NC))
    spec = InputSpec(name="images", width=NET, height=NET, resize="letterbox")
    return ModelCard(name="bench", onnx=Path("bench.onnx"), decoder="yolo_seg", input=spec, classes=classes,
                     decoder_params=params)


def scene(kept: int, per_object: int, everything: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    head = np.zeros((4 + NC + NM, ANCHORS), np.float32)
    head[4:4 + NC] = rng.uniform(0.0, 0.2, (NC, ANCHORS))  # background anchors, below conf 0.25
    head[0:2] = rng.uniform(0, NET, (2, ANCHORS))
    head[2:4] = rng.uniform(8, 200, (2, ANCHORS))
    head[4 + NC:] = rng.normal(0, 1, (NM, ANCHORS))
    if everything:
        head[4 + rng.integers(0, NC, ANCHORS), np.arange(ANCHORS)] = rng.uniform(0.3, 1.0, ANCHORS)
    slots = rng.permutation(ANCHORS)
    for j in range(kept):
        cx, cy = rng.uniform(80, 560), rng.uniform(200, 440)  # inside the letterboxed content
        w, h = rng.uniform(20, 150, 2)
        cls, score = int(rng.integers(0, NC)), rng.uniform(0.5, 0.95)
        for d in range(per_object):
            a = slots[j * per_object + d]
            head[0:4, a] = (cx + 0.01 * d * w, cy - 0.01 * d * h, w * (1 + 0.01 * d), h)  # IoU > 0.9
            head[4 + cls, a] = score - 0.02 * d
    # smooth prototypes, as a real network gives
    protos = cv2.GaussianBlur(rng.normal(0, 4, (NET // 4, NET // 4, NM)).astype(np.float32), (0, 0), 4)
    return {"output0": head[None], "output1": np.ascontiguousarray(protos.transpose(2, 0, 1))[None]}




def decoder_for(objects: int) -> YoloSegDecoder:
    decoder = YoloSegDecoder(make_card({"max_detections": max(objects, 100), "max_candidates": max(300, 5 * objects)}))
    decoder.check((TensorSpec("output0", (1, 4 + NC + NM, ANCHORS), "float32"),
                   TensorSpec("output1", (1, NM, NET // 4, NET // 4), "float32")))
    return decoder


def by_size(quick: bool) -> list[dict[str, object]]:
    short, long = (2, 4) if quick else (30, 90)
    rows = []
    for width, height in SIZES[:2] if quick else SIZES:
        source = f"synthetic:?seed=7&frames={long}&fps=10&width={width}&height={height}"
        read_frames(source, 1)  # renders the drive into the cache before anything is timed
        a = run_node(bench_config(source, short))
        z = run_node(bench_config(source, long))
        stages = z.extra["latency"]["stages"]
        fps = float(z.extra["latency"]["fps"]) or z.fps
        rows.append({"case": f"node, {width}x{height} source", "ms/frame": 1e3 / fps,
                     "CPU ms/frame": 1e3 * (z.cpu_s - a.cpu_s) / (z.frames - a.frames),
                     "decode p50 ms": stages["postprocess"]["p50_ns"] / 1e6})
    return rows


def by_objects(quick: bool) -> list[dict[str, object]]:
    iterations = 3 if quick else 100
    rng = np.random.default_rng(0)
    geometry = Preprocessor(make_card({}).input).geometry(720, 1280)
    encoder = FrameEncoder("cam0", "zstd")
    rows = []
    for objects in OBJECTS:
        decoder, outputs = decoder_for(objects), scene(objects, 5, False, rng)
        decode_ms, encode_ms, segments = [], [], 0
        for i in range(iterations + 2):
            start = time.perf_counter()
            seg = decoder.decode(outputs, geometry)
            middle = time.perf_counter()
            encoder.encode(FrameResult("cam0", i, i, 1280, 720, seg, {"capture": 0}), epoch=1, seq=i,
                           clock=time.monotonic_ns)
            end = time.perf_counter()
            if i >= 2:  # the first calls warm caches
                decode_ms.append((middle - start) * 1e3)
                encode_ms.append((end - middle) * 1e3)
            segments = len(seg.segments)
        d, e = spread(decode_ms), spread(encode_ms)
        rows.append({"case": f"YOLO-seg decode + encode, {objects} objects", "segments": segments,
                     "decode ms": d["median"], "decode p90 ms": d["p90"], "encode ms": e["median"]})
    return rows


def run(quick: bool) -> Outcome:
    cv2.setNumThreads(1)
    objects = by_objects(quick)
    sizes = by_size(quick)
    figures = {"decode_ms_50_objects": next(r["decode ms"] for r in objects if "50 objects" in str(r["case"])),
               "ms_per_frame_720p": next(r["ms/frame"] for r in sizes if "1280x720" in str(r["case"]))}
    return Outcome(figures, objects + sizes, {"sizes": [f"{w}x{h}" for w, h in SIZES], "objects": list(OBJECTS),
                                              "model": "panoptic-tiny (sizes), synthetic YOLO-seg outputs (objects)"},
                   ["objects: decoder on one OpenCV thread; sizes: the node with 2 ORT threads"])
