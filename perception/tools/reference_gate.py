"""The accuracy gate for a user's own model: the FP16/INT8 variant against the FP32 model's own
outputs on the user's frames.

The synthetic held-out drives (perception.tools.accuracy) score only a model trained on the
synthetic classes; any other model finds nothing there, and "PQ 0.00 vs FP32 0.00" passes any
gate. Here FP32 is the reference instead of ground truth: both models decode the same frames
(a drive, a video, an image folder: any replay source URI) through the card's pipeline, and
the variant's segments are matched to FP32's the panoptic way (same class, IoU > 0.5), as
`perception compare` matches two runs. Reported: PQ of the variant with FP32 as the reference
(0-100, averaged over classes; FP32 against itself is 100 by definition), the mean mask IoU of
matched segments and the mean |score change| over them. The PQ drop is held to the same
GATE_LIMITS as the synthetic gate. Models run as their files are written (quantize_in_float),
like the synthetic gate, so INT8 is judged on its Q/DQ math, not on the CPU's int8 kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.core.errors import PerceptionError
from perception.core.segmentation import Segmentation
from perception.inference.engine import EngineOptions
from perception.inference.onnxruntime import OrtEngine
from perception.models.card import ModelCard
from perception.runtime.pipeline import Pipeline
from perception.tools.compare import ClassTally, class_averaged_pq, match_segments, tally
from perception.tools.precision import PrecisionError


@dataclass(frozen=True)
class Agreement:
    """How closely a variant reproduces the FP32 outputs."""

    pq: float  # 0-100, the variant's segments judged against FP32's
    mask_iou: float  # mean IoU of matched segments (1.0 when none matched and none existed)
    score_drift: float  # mean |score variant - score FP32| over matched segments
    frames: int
    reference_segments: int

    def summary(self) -> str:
        return (f"against FP32's own outputs on {self.frames} frames ({self.reference_segments} segments): "
                f"mask IoU {self.mask_iou:.4f}, mean score drift {self.score_drift:.4f}")


def user_frames(uri: str, count: int) -> list[np.ndarray]:
    """Up to `count` BGR frames of a replay source (drive, video, image folder), in order."""
    from perception.capture.source import open_source

    if count <= 0:
        raise PrecisionError(f"--eval-frames {count} is not positive", "pass --eval-frames N > 0")
    try:
        source = open_source(uri)
    except PerceptionError as exc:
        raise PrecisionError(f"--frames {uri!r}: {exc.problem}", exc.fix) from exc
    if source.live:
        raise PrecisionError(f"--frames {uri!r} is a live source", "record it first (perception record --source "
                                                                   f"{uri} --out frames.mcap) and pass the file")
    source.open()
    frames: list[np.ndarray] = []
    try:
        while len(frames) < count and (item := source.read()) is not None:
            frames.append(item[0])
    finally:
        source.close()
    if not frames:
        raise PrecisionError(f"--frames {uri!r} holds no frames", "give a drive, video or folder with images")
    return frames


def _run(card: ModelCard, model: Path, frames: list[np.ndarray]) -> list[Segmentation]:
    with Pipeline(card, OrtEngine(model, EngineOptions(), quantize_in_float=True)) as pipeline:
        return [pipeline.process(frame) for frame in frames]


class ReferenceEvaluator:
    """ONNX path -> PQ (0-100) of that model against the FP32 model's outputs; `last` holds the details."""

    def __init__(self, card: ModelCard, fp32_model: Path, frames: list[np.ndarray]) -> None:
        self.card = card
        self.fp32_model = Path(fp32_model)
        self.frames = frames
        self.reference = _run(card, self.fp32_model, frames)
        self.reference_segments = sum(len(s.segments) for s in self.reference)
        if self.reference_segments == 0:
            raise PrecisionError(f"the FP32 model finds no segment on the {len(frames)} gate frames, so a gate "
                                 "against its outputs would measure nothing",
                                 "pass --frames with frames where the model sees what it was trained for")
        self.last: Agreement | None = None

    def __call__(self, model: Path) -> float:
        if Path(model) == self.fp32_model:
            return 100.0  # the reference itself
        self.last = self.agreement(_run(self.card, Path(model), self.frames))
        return self.last.pq

    def agreement(self, outputs: list[Segmentation]) -> Agreement:
        classes: dict[int, ClassTally] = {}
        ious: list[float] = []
        drifts: list[float] = []
        for reference, variant in zip(self.reference, outputs, strict=True):
            matching = match_segments(reference.id_map, reference.segments, variant.id_map, variant.segments)
            tally(matching, classes)
            score_a = dict(zip(reference.segments.ids.tolist(), reference.segments.scores.tolist(), strict=True))
            score_b = dict(zip(variant.segments.ids.tolist(), variant.segments.scores.tolist(), strict=True))
            for id_a, id_b, _class_id, iou in matching.pairs:
                ious.append(iou)
                drifts.append(abs(score_b[id_b] - score_a[id_a]))
        return Agreement(100.0 * class_averaged_pq(classes), float(np.mean(ious)) if ious else 0.0,
                         float(np.mean(drifts)) if drifts else 0.0, len(outputs), self.reference_segments)
