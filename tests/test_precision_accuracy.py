"""The gate's PQ evaluation on the held-out synthetic drive, with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from perception.inference.accuracy import _as_frame, panoptic_quality, pq_evaluator, truth_segmentation
from perception.inference.precision import convert_fp16
from perception.models.card import load_card
from perception.record.compare import ClassTally, diff_frame
from perception.synth import Drive
from tests.test_precision_transforms import H, W, seg_net
from tests.test_trt_build_engine import CARD


def test_ground_truth_judged_against_itself_is_perfect() -> None:
    frame = Drive(5_000_000, 1).frame(0)
    truth = truth_segmentation(frame.truth.id_map, frame.truth.segments)
    assert truth.id_map.shape == frame.truth.id_map.shape
    assert len(truth.segments) == len(frame.truth.segments)
    assert ((truth.id_map == 0) == (frame.truth.id_map == 0)).all()  # void stays void
    tallies: dict[int, ClassTally] = {}
    diff_frame(_as_frame(truth, 0), _as_frame(truth, 0), {}, tallies)
    assert panoptic_quality(tallies) == 100.0


def test_shifted_prediction_loses_pq() -> None:
    frame = Drive(5_000_000, 1).frame(0)
    truth = truth_segmentation(frame.truth.id_map, frame.truth.segments)
    shifted = truth_segmentation(np.roll(frame.truth.id_map, 40, axis=1), frame.truth.segments)
    tallies: dict[int, ClassTally] = {}
    diff_frame(_as_frame(truth, 0), _as_frame(shifted, 0), {}, tallies)
    assert 0.0 < panoptic_quality(tallies) < 100.0


def test_evaluator_scores_models_on_the_same_frames(tmp_path: Path) -> None:
    model = seg_net(tmp_path / "seg.onnx")
    model.with_suffix(".toml").write_text(CARD.format(w=W, h=H))
    evaluate = pq_evaluator(load_card(model.with_suffix(".toml")), frames=2)
    variant = tmp_path / "v.onnx"
    onnx.save(convert_fp16(onnx.load(model)), variant)
    first, again, fp16 = evaluate(model), evaluate(model), evaluate(variant)
    assert first == again  # deterministic: frames rendered once, same pixels each time
    assert 0.0 <= first <= 100.0 and 0.0 <= fp16 <= 100.0
