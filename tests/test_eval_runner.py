"""The eval runner's analysis knob: ground-truth things under N pixels scored as void."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perception.core.segmentation import Segmentation
from perception.evaluation.runner import evaluate, void_small_things
from perception.models.card import load_card
from perception.synth import SceneTruth, TruthSegment

CARD = Path(__file__).resolve().parent.parent / "engines" / "panoptic-tiny.toml"


def truth() -> SceneTruth:
    m = np.full((20, 20), 1, np.uint32)  # road
    m[2:12, 2:12] = 1001  # a 100 px car
    m[15:17, 15:18] = 1002  # a 6 px car
    return SceneTruth(m, (TruthSegment(1, 0, 0, False), TruthSegment(1001, 5, 1, True),
                          TruthSegment(1002, 5, 2, True)))


def test_small_things_become_void_and_leave_the_table() -> None:
    t = void_small_things(truth(), 10, {5, 6, 7})
    assert [s.id for s in t.segments] == [1, 1001]
    assert int((t.id_map == 0).sum()) == 6
    assert void_small_things(truth(), 5, {5}).segments == truth().segments  # nothing under 5 px


def test_a_missed_small_thing_counts_only_without_the_knob() -> None:
    card = load_card(CARD)
    gt = truth()
    pred_map = np.where(gt.id_map == 1002, 1, gt.id_map)  # the small car predicted as road
    pred_map = np.select([pred_map == 1, pred_map == 1001], [1, 2]).astype(np.uint32)
    seg = Segmentation.from_id_map(pred_map, np.array([0, 5], np.int32), np.ones(2, np.float32),
                                   np.array([False, True]))
    frames = [(np.zeros((20, 20, 3), np.uint8), gt)]
    every = evaluate(card, lambda _bgr: seg, frames).to_dict()
    assert every["per_class"]["car"]["fn"] == 1
    sized = evaluate(card, lambda _bgr: seg, frames, min_thing_area=10).to_dict()
    assert sized["per_class"]["car"]["fn"] == 0 and sized["per_class"]["car"]["pq"] == 100.0
