"""The accuracy gate's evaluation: PQ of an ONNX model, run with ONNX Runtime, on held-out synthetic drives.

The drives are the ones `perception eval` holds out by default (seeds 11-14, frames 0.5 s apart),
which neither training (seeds from 1e6), threshold tuning (drives 21-24) nor INT8 calibration
(perception/tools/calibration.py) touches. Frames and ground truth are rendered once and
reused for every model scored, so FP32 and its variants see the same pixels. PQ follows the
COCO panopticapi rules (perception.evaluation), averaged over classes, on a 0-100 scale.
Every model is run node by node as its file is written (OrtEngine's quantize_in_float): Q/DQ
pairs are float math, as an int8 GPU engine computes them, not the CPU's own int8 kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from perception.inference.engine import EngineOptions
from perception.inference.onnxruntime import OrtEngine
from perception.models.card import ModelCard
from perception.runtime.pipeline import Pipeline

HELD_OUT_SEEDS = (11, 12, 13, 14)
HELD_OUT_FPS = 2.0


def held_out_frames(frames: int) -> list[tuple[Any, Any]]:
    """`frames` (BGR, ground truth) pairs spread over the held-out drives."""
    from perception.synth import Drive

    per_drive = -(-frames // len(HELD_OUT_SEEDS))
    out = [(f.bgr, f.truth) for seed in HELD_OUT_SEEDS for f in Drive(seed, per_drive, HELD_OUT_FPS)]
    return out[:frames]


def pq_evaluator(card: ModelCard, frames: int) -> Callable[[Path], float]:
    """ONNX path -> PQ of that model (preprocessed and decoded as the card says) on the held-out frames."""
    from perception.evaluation.runner import evaluate
    from perception.ops.progress import Progress

    drive = held_out_frames(frames)

    def score(model: Path) -> float:
        with Pipeline(card, OrtEngine(model, EngineOptions(), quantize_in_float=True)) as pipeline, \
                Progress(f"scoring {model.name}", len(drive)) as bar:
            return 100.0 * evaluate(card, pipeline.process, drive, progress=bar.update).summary().pq

    return score
