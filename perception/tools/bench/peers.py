"""`perception bench peers`: the same YOLO-seg ONNX and frames through Ultralytics' predict, our node, the bare engine.

The model is built from Ultralytics' yaml with random weights (nothing downloaded); its
BatchNorm statistics are recalibrated on a few frames (train-mode forward passes, no
gradients), else every image gives the same output; then it is exported to ONNX. On the same
frames of OpenCV's vtest.avi (Debian's opencv-doc, cached outside git), with the same ORT
threads, at two confidence thresholds (0.25, and a low one at which ~35 masks are kept per
frame), the three contenders alternate: (a) `YOLO(model.onnx).predict` with retina masks,
(b) our node lock-step, (c) `engine.infer` alone. Reported: ms/frame, overhead over bare,
masks kept per frame, and the mask IoU between Ultralytics' and our outputs on the same frames
(instances matched by mask IoU on id maps painted in score order). Needs the [bench] extra.
Target: our node's ms/frame <= 0.8x Ultralytics' at both thresholds; mask IoU >= 0.95.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.inference.engine import EngineOptions
from perception.models.card import load_card
from perception.runtime.config import BUNDLE_ROOT, override
from perception.runtime.pipeline import Pipeline
from perception.tools.bench.contenders import BareEngine, BenchError, bench_config, read_frames, run_node
from perception.tools.bench.report import Outcome, spread
from perception.tools.sample_video import fetch_vtest

THREADS = 2
DEFAULT_CONF = 0.25
MODEL_YAML = "yolo11n-seg.yaml"


def _ultralytics() -> Any:
    try:
        import torch  # noqa: F401
        import ultralytics
    except ImportError as exc:
        raise BenchError(f"bench peers needs ultralytics and torch ({exc.name} is not installed)",
                         'pip install -e ".[bench]" (one command: it pins the CPU build torch==2.13.0)') from exc
    _without_broken_torchvision()
    return ultralytics


def _without_broken_torchvision() -> None:
    """PyPI's torchvision is a CUDA build: against the CPU torch its C ops fail to load.

    Ultralytics imports it only to pick torchvision's NMS (in AutoBackend.warmup, which on the
    CPU runs no forward pass for ONNX) and otherwise uses its own torch NMS, documented to match
    torchvision's exactly; so where torchvision cannot load, warm-up skips that import.
    """
    try:
        import torchvision  # noqa: F401
    except Exception:  # RuntimeError "operator torchvision::nms does not exist", or not installed
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        from ultralytics.nn.autobackend import AutoBackend

        AutoBackend.warmup = lambda self, *args, **kwargs: None


def build_model(frames: list[np.ndarray], where: Path) -> Path:
    """YOLO-seg from the yaml, BatchNorm recalibrated on `frames`, exported to ONNX."""
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO(MODEL_YAML, task="segment")
    net = yolo.model
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batches
    net.train()
    with torch.no_grad():
        for frame in frames:
            x = cv2.resize(frame, (640, 640))[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
            net(torch.from_numpy(np.ascontiguousarray(x)))
    net.eval()
    with contextlib.chdir(where):  # a model built from yaml exports into the working directory
        exported = yolo.export(format="onnx", imgsz=640, simplify=False, dynamic=False, verbose=False)
    target = where / "yolo-seg-random.onnx"
    (where / exported).replace(target)
    return target


def write_card(onnx: Path, conf: float, where: Path, names: dict[int, str]) -> Path:
    """The example YOLO-seg card for this ONNX, its classes from the model's own names."""
    text = (BUNDLE_ROOT / "engines" / "examples" / "yolo-seg.example.toml").read_text()
    text = text[:text.index("[[classes]]")]
    text += "".join(f'[[classes]]\nid = {i}\nname = "{name}"\nthing = true\n\n' for i, name in sorted(names.items()))
    text = text.replace('onnx = "yolo11n-seg.onnx"', f'onnx = "{onnx}"')
    text = text.replace("conf_threshold = 0.25", f"conf_threshold = {conf}")
    text = text.replace("max_candidates = 300", "max_candidates = 3000").replace("max_detections = 100",
                                                                                  "max_detections = 300")
    # Ultralytics keeps a detection however much of it others cover; so does ours here, so that both
    # keep the same instances (both id maps are then painted best first)
    text = text.replace("overlap_threshold = 0.5", "overlap_threshold = 0.0")
    card = where / f"yolo-seg-{conf:g}.toml"
    card.write_text(text)
    return card


def low_threshold(card: Path, frames: list[np.ndarray], kept: int = 35) -> float:
    """The confidence at which about `kept` anchors' best class scores pass, median over frames."""
    spec = load_card(card)
    with Pipeline.from_card(spec, options=EngineOptions(threads=THREADS)) as pipeline:
        cuts = []
        for frame in frames[:10]:
            outputs = pipeline.engine.infer({spec.input.name: pipeline.prepare(frame).tensor})
            head = next(a for a in outputs.values() if a.ndim == 3)[0]
            best = np.sort(head[4:4 + len(spec.classes)].max(axis=0))[::-1]
            cuts.append(float(best[min(kept, len(best) - 1)]))
    return round(float(np.median(cuts)), 4)


def painted(masks: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Instances (best first) painted into an id map, a pixel going to the first that claims it."""
    id_map = np.zeros(shape, np.uint16)  # at most 300 detections (Ultralytics' max_det)
    for k, mask in enumerate(masks, start=1):
        id_map[(id_map == 0) & mask] = k
    return id_map


def mask_iou(ours: np.ndarray, theirs: np.ndarray) -> list[float]:
    """Per our instance, its best IoU with one of theirs (joint histogram of the two id maps)."""
    a, b = ours.astype(np.int64).ravel(), theirs.astype(np.int64).ravel()
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb)
    area_a, area_b = joint.sum(axis=1), joint.sum(axis=0)
    ious = []
    for i in range(1, na):
        if area_a[i] == 0:
            continue
        union = area_a[i] + area_b[1:] - joint[i, 1:]
        ious.append(float((joint[i, 1:] / np.maximum(union, 1)).max()) if nb > 1 else 0.0)
    return ious


class UltralyticsPeer:
    def __init__(self, onnx: Path) -> None:
        import onnxruntime as ort
        from ultralytics import YOLO

        self.yolo = YOLO(str(onnx), task="segment")
        self.predict(np.zeros((64, 64, 3), np.uint8), DEFAULT_CONF)  # builds its predictor and session
        backend = self.yolo.predictor.model
        if hasattr(backend, "session"):  # the same ORT threads as ours
            options = ort.SessionOptions()
            options.intra_op_num_threads = THREADS
            backend.session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])

    def predict(self, frame: np.ndarray, conf: float) -> Any:
        return self.yolo.predict(frame, conf=conf, imgsz=640, retina_masks=True, verbose=False)[0]

    def run(self, frames: list[np.ndarray], conf: float) -> tuple[float, list[tuple[np.ndarray, int]]]:
        """ms per predict call, and each frame's masks painted into an id map with their count.

        Each result is painted as it comes, outside the timed calls: 300 frames of retina masks
        kept as Ultralytics returns them (float, source size) take ~20 GB at 35 masks a frame."""
        elapsed, painted_maps = 0.0, []
        for frame in frames:
            start = time.perf_counter()
            result = self.predict(frame, conf)
            elapsed += time.perf_counter() - start
            masks = their_masks(result)
            painted_maps.append((painted(masks, masks[0].shape if masks else frame.shape[:2]), len(masks)))
        return elapsed / len(frames) * 1e3, painted_maps


def their_masks(result: Any) -> list[np.ndarray]:
    if result.masks is None:
        return []
    data = result.masks.data.cpu().numpy() > 0.5
    return list(data)


def compare(card: Path, frames: list[np.ndarray], theirs: list[tuple[np.ndarray, int]]) -> tuple[list[float], float]:
    spec = load_card(card)
    ious: list[float] = []
    kept = 0
    with Pipeline.from_card(spec, options=EngineOptions(threads=THREADS)) as pipeline:
        for frame, (their_map, _) in zip(frames, theirs, strict=True):
            seg = pipeline.process(frame)
            kept += len(seg.segments)
            resized = their_map if their_map.shape == seg.shape else cv2.resize(  # nearest: the same pixel of
                their_map, (seg.shape[1], seg.shape[0]), interpolation=cv2.INTER_NEAREST)  # every mask
            ious += mask_iou(seg.id_map, resized)
    return ious, kept / len(frames)


def run(quick: bool) -> Outcome:
    # Ultralytics logs to stdout (its handler takes sys.stdout when first imported): keep stdout for the report
    with contextlib.redirect_stdout(sys.stderr):
        _ultralytics()
        return _run(quick)


def _run(quick: bool) -> Outcome:
    count, repetitions = (6, 1) if quick else (300, 3)
    video, why = fetch_vtest()
    if video is None:
        raise BenchError(f"bench peers needs OpenCV's vtest.avi: {why}", "apt-get update, then run it again "
                         "(it unpacks Debian's opencv-doc into the user cache)")
    frames = read_frames(str(video), count)
    where = Path(tempfile.mkdtemp(prefix="perception-peers-"))
    onnx = build_model(frames[:: max(1, len(frames) // 8)][:8], where)
    peer = UltralyticsPeer(onnx)
    names = {int(k): str(v) for k, v in peer.yolo.names.items()}
    thresholds = (DEFAULT_CONF, low_threshold(write_card(onnx, DEFAULT_CONF, where, names), frames))
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    for conf in thresholds:
        card = write_card(onnx, conf, where, names)
        config = override(bench_config(str(video), count, THREADS), "model", card=card)
        bare = BareEngine(config, frames)
        times: dict[str, list[float]] = {"ultralytics": [], "node": [], "bare": []}
        theirs: list[tuple[np.ndarray, int]] = []
        try:
            for _ in range(repetitions):  # alternate the contenders
                ms, theirs = peer.run(frames, conf)
                times["ultralytics"].append(ms)
                node = run_node(config)
                times["node"].append(1e3 / (float(node.extra["latency"]["fps"]) or node.fps))
                times["bare"].append(1e3 / bare.run().fps)
        finally:
            bare.close()
        ious, ours_kept = compare(card, frames, theirs)
        their_kept = sum(n for _, n in theirs) / len(theirs)
        bare_ms = spread(times["bare"])["median"]
        iou = float(np.mean(ious)) if ious else float("nan")
        for contender, key, kept in (("ultralytics predict", "ultralytics", their_kept),
                                     ("our node", "node", ours_kept), ("bare engine", "bare", None)):
            s = spread(times[key])
            rows.append({"conf": conf, "contender": contender, "ms/frame": s["median"], "p90 ms/frame": s["p90"],
                         "overhead over bare": s["median"] / bare_ms - 1,
                         "masks/frame": "" if kept is None else kept,
                         "mask IoU vs ultralytics": "" if contender != "our node" else iou})
        tag = "default" if conf == DEFAULT_CONF else "low"
        ratio = spread(times["node"])["median"] / spread(times["ultralytics"])["median"]
        figures[f"ratio_to_ultralytics_{tag}"] = ratio
        figures[f"mask_iou_{tag}"] = iou
    figures["ratio_to_ultralytics"] = figures["ratio_to_ultralytics_default"]
    figures["target_ratio"], figures["target_iou"] = 0.8, 0.95
    return Outcome(figures, rows, {"video": video.name, "frames": len(frames), "repetitions": repetitions,
                                   "threads": THREADS, "model": f"{MODEL_YAML}, random weights, BatchNorm recalibrated",
                                   "thresholds": list(thresholds)},
                   ["ratio_to_ultralytics = our node's ms/frame / Ultralytics' predict ms/frame (< 1: we are faster)"])
