"""YOLO-seg decode cost on one core: engine outputs -> Segmentation at source resolution.

Scene: a 640x640 letterboxed input from a 1280x720 source, an 80-class export with 8400
anchors (output0 [1, 116, 8400], output1 [1, 32, 160, 160]); 100 anchors pass the
confidence threshold, in groups of 5 overlapping boxes of one object, so NMS keeps 20.
Target: <= 3 ms per frame on one core. Also timed: the same with the worst case of every
anchor above threshold (the 300-candidate cap at work), and the folded graph's outputs
(`perception fold --post`, decoder in assembled mode), and the shipped Panoptic-DeepLab
model's decode for comparison.

    python bench/decode_bench.py [--iterations N] [--kept K]
"""

from __future__ import annotations

import os

# one core: pin BLAS/OpenCV threads before numpy and cv2 load
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.inference.engine import TensorSpec  # noqa: E402
from perception.models.card import ClassInfo, InputSpec, ModelCard  # noqa: E402
from perception.models.decoders.nms import class_aware_nms  # noqa: E402
from perception.models.decoders.yolo_seg import YoloSegDecoder  # noqa: E402
from perception.models.preprocess import Preprocessor  # noqa: E402

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


def assembled(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the folded graph returns for the same frame: kept detections with their masks built."""
    head, protos = raw["output0"][0], raw["output1"][0]
    scores_all = head[4:4 + NC]
    best = scores_all.max(axis=0)
    cand = np.nonzero(best > 0.25)[0]
    xywh = head[0:4, cand]
    boxes = np.stack([xywh[0] - xywh[2] / 2, xywh[1] - xywh[3] / 2, xywh[0] + xywh[2] / 2,
                      xywh[1] + xywh[3] / 2], axis=1)
    classes = scores_all[:, cand].argmax(axis=0)
    keep = class_aware_nms(boxes, best[cand], classes, 0.7, 100)
    coeffs = head[4 + NC:, cand[keep]].T
    masks = 1 / (1 + np.exp(-(coeffs @ protos.reshape(NM, -1)))).reshape(-1, *protos.shape[1:])
    return {"boxes": boxes[keep].astype(np.float32), "scores": best[cand][keep],
            "class_ids": classes[keep].astype(np.int64), "masks": masks.astype(np.float32)}


def time_decode(decoder: YoloSegDecoder, outputs: dict[str, np.ndarray], iterations: int) -> tuple[list[float], int]:
    geometry = Preprocessor(make_card({}).input).geometry(720, 1280)
    for _ in range(10):
        result = decoder.decode(outputs, geometry)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        result = decoder.decode(outputs, geometry)
        times.append((time.perf_counter() - start) * 1e3)
    return times, len(result.segments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--kept", type=int, default=20)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = np.random.default_rng(0)
    raw_specs = (TensorSpec("output0", (1, 4 + NC + NM, ANCHORS), "float32"),
                 TensorSpec("output1", (1, NM, NET // 4, NET // 4), "float32"))
    decoder = YoloSegDecoder(make_card({}))
    decoder.check(raw_specs)
    typical = scene(args.kept, 5, False, rng)
    worst = scene(args.kept, 5, True, rng)
    folded = YoloSegDecoder(make_card({"assembled": True}))
    folded.check((TensorSpec("boxes", ("n", 4), "float32"), TensorSpec("scores", ("n",), "float32"),
                  TensorSpec("class_ids", ("n",), "int64"), TensorSpec("masks", ("n", 160, 160), "float32")))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, pinned to one; "
          f"numpy {np.__version__}, OpenCV {cv2.__version__}, Python {platform.python_version()}")
    print("1280x720 source, 640x640 letterbox, 80 classes, 8400 anchors; ms per decode (median / p90 / max)")
    rows = [("raw export, 100 candidates -> NMS", decoder, typical),
            ("raw export, all 8400 above threshold (cap 300)", decoder, worst),
            ("folded graph outputs (assembled)", folded, assembled(typical))]
    for label, dec, outputs in rows:
        times, kept = time_decode(dec, outputs, args.iterations)
        report(label, times, kept)
    panoptic_tiny(args.iterations)


def report(label: str, times: list[float], segments: int) -> None:
    q = statistics.quantiles(times, n=10)
    print(f"  {label:<48} segments {segments:>3}   {statistics.median(times):6.2f} / {q[-1]:6.2f} / {max(times):6.2f}")


def panoptic_tiny(iterations: int) -> None:
    """The shipped Panoptic-DeepLab model's decode on synthetic 1280x720 frames (for comparison)."""
    from perception.inference.onnxruntime import OrtEngine
    from perception.models.card import load_card
    from perception.models.decoders import make_decoder
    from perception.synth import Drive

    card = load_card(Path(__file__).resolve().parents[1] / "engines" / "panoptic-tiny.toml")
    decoder = make_decoder(card)
    preprocess = Preprocessor(card.input)
    drive = Drive(seed=7, frames=10, width=1280, height=720)
    with OrtEngine(card.model_file) as engine:
        decoder.check(engine.outputs)
        frames = []
        for i in range(10):
            tensor, geometry = preprocess(drive.frame(i).bgr)
            frames.append((dict(engine.infer({card.input.name: tensor})), geometry))
    times, segments = [], 0
    for k in range(max(iterations, 10)):
        outputs, geometry = frames[k % len(frames)]
        start = time.perf_counter()
        segments = len(decoder.decode(outputs, geometry).segments)
        times.append((time.perf_counter() - start) * 1e3)
    print("shipped panoptic-tiny (320x192 network), synthetic 1280x720 frames; ms per decode")
    report("panoptic_deeplab decode", times, segments)


if __name__ == "__main__":
    main()
