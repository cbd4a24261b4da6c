"""PQ/SQ/RQ and mIoU on hand-made maps, checked against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from perception.evaluation.pq import EvaluationError, PanopticAccumulator

NAMES = ("road", "sky", "car")
THINGS = (False, False, True)


def acc() -> PanopticAccumulator:
    return PanopticAccumulator(NAMES, THINGS)


def scene() -> tuple[np.ndarray, dict[int, int]]:
    """10x10: road bottom half (id 1), sky top half (id 2), a 4x4 car (id 10) on the road."""
    m = np.full((10, 10), 2, np.uint32)
    m[5:] = 1
    m[5:9, 2:6] = 10
    return m, {1: 0, 2: 1, 10: 2}


def test_perfect_prediction_is_100() -> None:
    gt, classes = scene()
    a = acc()
    a.add(gt, classes, gt.copy(), dict(classes))
    d = a.report().to_dict()
    assert d["all"] == {"pq": 100.0, "sq": 100.0, "rq": 100.0, "classes": 3}
    assert d["miou"] == 100.0
    assert d["per_class"]["car"]["tp"] == 1


def test_ids_may_differ_between_prediction_and_truth() -> None:
    gt, classes = scene()
    pred = np.select([gt == 1, gt == 2, gt == 10], [7, 8, 99]).astype(np.uint16)
    a = acc()
    a.add(gt, classes, pred, {7: 0, 8: 1, 99: 2})
    assert a.report().summary().pq == pytest.approx(1.0)


def test_iou_above_half_matches_and_below_does_not() -> None:
    gt, classes = scene()
    # car predicted 4x3 (12 of its 16 px): IoU 0.75 -> TP with IoU 0.75
    pred = gt.copy()
    pred[5:9, 5] = 1
    a = acc()
    a.add(gt, classes, pred, dict(classes))
    car = a.report().per_class[2]
    assert (car.tp, car.fp, car.fn) == (1, 0, 0)
    assert car.iou_sum == pytest.approx(12 / 16)
    # car predicted 4x2 (8 of 16): IoU exactly 0.5 is not > 0.5 -> one FN and one FP
    pred = gt.copy()
    pred[5:9, 4:6] = 1
    b = acc()
    b.add(gt, classes, pred, dict(classes))
    car = b.report().per_class[2]
    assert (car.tp, car.fp, car.fn) == (0, 1, 1)
    assert car.pq == 0.0


def test_pq_sq_rq_formulas() -> None:
    gt, classes = scene()
    pred = gt.copy()
    pred[5:9, 5] = 1  # car IoU 0.75
    pred[0, 0] = 20  # a 1-px false car in the sky
    a = acc()
    a.add(gt, classes, pred, {**classes, 20: 2})
    car = a.report().per_class[2]
    assert (car.tp, car.fp, car.fn) == (1, 1, 0)
    assert car.sq == pytest.approx(0.75)
    assert car.rq == pytest.approx(1 / 1.5)
    assert car.pq == pytest.approx(0.75 / 1.5)


def test_void_is_left_out_of_the_union_and_mostly_void_predictions_are_not_fp() -> None:
    gt, classes = scene()
    gt[5:9, 5] = 0  # the car's right column is void in the ground truth (12 px of car remain)
    pred = gt.copy()
    pred[5:9, 5] = 10  # predicting the car over the void column costs nothing
    gt_with_void = gt.copy()
    gt_with_void[0:2, 8:10] = 0  # a void patch in the sky...
    pred[0:2, 8:10] = 30  # ...where a predicted car lies entirely: not a false positive
    a = acc()
    a.add(gt_with_void, classes, pred, {**classes, 30: 2})
    car = a.report().per_class[2]
    assert (car.tp, car.fp, car.fn) == (1, 0, 0)
    assert car.iou_sum == pytest.approx(1.0)


def test_wrong_class_is_one_fp_and_one_fn() -> None:
    gt, classes = scene()
    a = acc()
    a.add(gt, classes, gt.copy(), {**classes, 10: 0})  # the car called road
    report = a.report()
    assert (report.per_class[2].fn, report.per_class[0].fp) == (1, 1)
    assert report.per_class[0].tp == 1


def test_things_stuff_split_and_absent_classes_do_not_count() -> None:
    gt = np.full((4, 4), 1, np.uint32)
    a = acc()
    a.add(gt, {1: 0}, gt.copy(), {1: 0})
    report = a.report()
    assert report.summary("stuff").classes == 1 and report.summary("things").classes == 0
    assert report.summary().pq == pytest.approx(1.0)


def test_semantic_miou() -> None:
    gt, classes = scene()
    pred = gt.copy()
    pred[5:9, 5] = 1  # 4 car px become road
    a = acc()
    a.add(gt, classes, pred, dict(classes))
    road_iou = 34 / 38  # road: 34 gt px, 4 more predicted
    car_iou = 12 / 16
    assert a.report().miou == pytest.approx((road_iou + 1.0 + car_iou) / 3)


def test_totals_add_over_frames() -> None:
    gt, classes = scene()
    a = acc()
    a.add(gt, classes, gt.copy(), dict(classes))
    a.add(gt, classes, np.where(gt == 10, 1, gt).astype(np.uint32), {1: 0, 2: 1})
    car = a.report().per_class[2]
    assert (car.tp, car.fn, a.report().frames) == (1, 1, 2)


@pytest.mark.parametrize(("pred", "pred_classes"), [
    (np.zeros((5, 5), np.uint32), {}),  # wrong size
    (np.ones((10, 10), np.uint32), {}),  # unlisted segment
    (np.ones((10, 10), np.uint32), {1: 9}),  # class outside the evaluated list
])
def test_incomparable_inputs_raise(pred: np.ndarray, pred_classes: dict[int, int]) -> None:
    gt, classes = scene()
    with pytest.raises(EvaluationError):
        acc().add(gt, classes, pred, pred_classes)
