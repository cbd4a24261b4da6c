"""The gate's PQ evaluation on the held-out synthetic drives, with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from perception.models.card import load_card
from perception.tools.accuracy import HELD_OUT_SEEDS, held_out_frames, pq_evaluator
from perception.tools.precision import convert_fp16
from tests.test_precision_transforms import H, W, seg_net
from tests.test_trt_build_engine import CARD


def test_held_out_frames_cover_every_held_out_drive() -> None:
    frames = held_out_frames(6)
    assert len(frames) == 6
    assert len(HELD_OUT_SEEDS) == 4
    first, second = frames[0][0], frames[2][0]  # drive 11 frame 0, drive 12 frame 0
    assert not np.array_equal(first, second)
    assert all(truth.id_map.shape == bgr.shape[:2] for bgr, truth in frames)


def test_evaluator_scores_models_on_the_same_frames(tmp_path: Path) -> None:
    model = seg_net(tmp_path / "seg.onnx", classes=8)
    model.with_suffix(".toml").write_text(CARD.format(w=W, h=H))
    evaluate = pq_evaluator(load_card(model.with_suffix(".toml")), frames=2)
    variant = tmp_path / "v.onnx"
    onnx.save(convert_fp16(onnx.load(model)), variant)
    first, again, fp16 = evaluate(model), evaluate(model), evaluate(variant)
    assert first == again  # deterministic: frames rendered once, same pixels each time
    assert 0.0 <= first <= 100.0 and 0.0 <= fp16 <= 100.0
