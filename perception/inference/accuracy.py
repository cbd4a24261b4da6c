"""The accuracy gate's evaluation: PQ of an ONNX model, run with ONNX Runtime, on a held-out synthetic drive.

The drive comes from the generator's test seed range (5e6...), which neither training nor
INT8 calibration (7e6...) touches. Its frames and ground truth are rendered once and reused for
every model scored, so FP32 and its variants see the same pixels. Segments are matched the
panoptic-quality way by perception.record.compare (same class, IoU > 0.5), and PQ is averaged
over the classes that occur, on a 0-100 scale.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from perception.inference.engine import EngineOptions
from perception.inference.onnxruntime import OrtEngine
from perception.models.card import ModelCard
from perception.models.segmentation import Segmentation
from perception.pipeline import Pipeline
from perception.record.compare import ClassTally, diff_frame

HELD_OUT_SEED = 5_000_000


def truth_segmentation(id_map: np.ndarray, segments: Any) -> Segmentation:
    """Synthetic ground truth (arbitrary segment ids, 0 = void) as a Segmentation numbered 1..N."""
    by_id = {s.id: s for s in segments}
    values, inverse = np.unique(id_map, return_inverse=True)
    kept = [int(v) for v in values if v != 0 and int(v) in by_id]
    lut = np.zeros(len(values), np.uint32)
    for new, value in enumerate(kept, start=1):
        lut[int(np.searchsorted(values, value))] = new
    return Segmentation.from_id_map(
        lut[inverse.reshape(id_map.shape)],
        np.array([by_id[v].class_id for v in kept], np.int32),
        np.ones(len(kept), np.float32),
        np.array([by_id[v].is_thing for v in kept], bool),
    )


def panoptic_quality(tallies: dict[int, ClassTally]) -> float:
    values = [t.pq for t in tallies.values() if t.tp + t.fp + t.fn > 0]
    return 100.0 * float(np.mean(values)) if values else 100.0


def _as_frame(segmentation: Segmentation, index: int) -> Any:
    """What diff_frame reads of a published frame."""
    return SimpleNamespace(id_map=segmentation.id_map, segments=segmentation.segments, camera="gate",
                           frame_index=index, stamp_ns=0)


def pq_evaluator(card: ModelCard, frames: int, seed: int = HELD_OUT_SEED) -> Callable[[Path], float]:
    """ONNX path -> PQ of that model (preprocessed and decoded per the card) on `frames` held-out frames."""
    from perception.synth import Drive

    drive = [(f.bgr, truth_segmentation(f.truth.id_map, f.truth.segments)) for f in Drive(seed, frames)]

    def evaluate(model: Path) -> float:
        tallies: dict[int, ClassTally] = {}
        with Pipeline(card, OrtEngine(model, EngineOptions())) as pipeline:
            for index, (image, truth) in enumerate(drive):
                diff_frame(_as_frame(truth, index), _as_frame(pipeline.process(image), index), {}, tallies)
        return panoptic_quality(tallies)

    return evaluate
