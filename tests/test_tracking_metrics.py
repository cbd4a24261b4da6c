"""Tracking metrics: py-motmetrics and our HOTA checked by hand on tiny cases, and `eval --tracking`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from perception.cli import main
from perception.core.segmentation import Segmentation
from perception.evaluation.hota import ALPHAS, HotaAccumulator
from perception.evaluation.mot import TrackingAccumulator, TruthThings
from perception.evaluation.pq import EvaluationError
from perception.evaluation.tracking import DriveFrame, score, truth_as_detections, with_true_velocities


def _frame(blobs: dict[int, tuple[int, int, int, int]], instance: dict[int, int],
           velocity: float = float("nan")) -> tuple[TruthThings, Segmentation]:
    """True things (segment id -> box), and a prediction with the same masks and given instance ids."""
    id_map = np.zeros((20, 40), np.uint16)
    for seg_id, (x0, y0, x1, y1) in blobs.items():
        id_map[y0:y1, x0:x1] = seg_id
    ids = sorted(blobs)
    truth = TruthThings(id_map, np.array(ids), np.full(len(ids), 5), np.array(ids), np.full((len(ids), 2), velocity))
    pred = truth_as_detections(truth)
    pred = Segmentation(pred.id_map, pred.segments.with_instance_ids(np.array([instance[i] for i in ids])))
    return truth, pred


def test_one_swap_by_hand() -> None:
    """Two objects, three frames, their ids swapped in the last one.

    IDF1: a<->1 and b<->2 match in 2 of 3 frames each: IDTP 4, IDFN 2, IDFP 2 -> 8 / 12.
    MOTA: no miss, no false positive, 2 switches over 6 true detections -> 1 - 2/6.
    HOTA (every IoU 1): DetA 1; the pairs (a,1), (b,2) score 2/(3+3-2) = 0.5 on 2 matches each,
    (a,2), (b,1) 1/(3+3-1) = 0.2 on 1 each: AssA = (4 x 0.5 + 2 x 0.2) / 6 = 0.4, HOTA = sqrt(0.4).
    """
    acc = TrackingAccumulator()
    blobs = {1: (0, 0, 10, 10), 2: (20, 0, 30, 10)}
    for instance in ({1: 1, 2: 2}, {1: 1, 2: 2}, {1: 2, 2: 1}):
        acc.add(*_frame(blobs, instance))
    report = acc.report()
    assert report["idf1"] == pytest.approx(8 / 12)
    assert report["mota"] == pytest.approx(1 - 2 / 6)
    assert report["num_switches"] == 2 and report["num_unique_objects"] == 2
    assert report["hota"] == pytest.approx(np.sqrt(0.4))
    assert report["deta"] == pytest.approx(1.0) and report["assa"] == pytest.approx(0.4)


def test_hota_counts_a_half_overlap_only_at_thresholds_up_to_one_half() -> None:
    """IoU 0.5 in both frames: a true positive for alpha 0.05 .. 0.5 (10 of 19), else a miss and a
    false positive; there DetA = AssA = 1, elsewhere 0, so HOTA = 10 / 19."""
    hota = HotaAccumulator()
    for _ in range(2):
        hota.add([7], [3], np.array([[0.5]]))
    assert int(np.sum(ALPHAS <= 0.5 + 1e-9)) == 10
    assert hota.compute()["hota"] == pytest.approx(10 / 19)


def test_small_true_things_are_ignored_with_the_tracks_on_them() -> None:
    acc = TrackingAccumulator(min_area=50)
    blobs = {1: (0, 0, 10, 10), 2: (20, 0, 24, 4)}  # 100 px and 16 px
    acc.add(*_frame(blobs, {1: 1, 2: 2}))
    acc.add(*_frame(blobs, {1: 1, 2: 9}))  # a switch on the small one does not count
    report = acc.report()
    assert report["num_unique_objects"] == 1 and report["num_switches"] == 0
    assert report["num_false_positives"] == 0 and report["idf1"] == pytest.approx(1.0)


def test_mostly_hidden_true_things_are_ignored_only_under_the_visibility_rule() -> None:
    blobs = {1: (0, 0, 10, 10), 2: (20, 0, 30, 10)}
    strict, lenient = TrackingAccumulator(), TrackingAccumulator(min_visibility=0.25)
    for instance in ({1: 1, 2: 2}, {1: 1, 2: 9}):  # the second one's id changes
        truth, pred = _frame(blobs, instance)
        truth = replace(truth, visibility=np.array([1.0, 0.1]))  # it shows a tenth of itself
        strict.add(truth, pred)
        lenient.add(truth, pred)
    assert strict.report()["num_switches"] == 1 and strict.report()["num_unique_objects"] == 2
    report = lenient.report()
    assert report["num_switches"] == 0 and report["num_unique_objects"] == 1
    assert report["num_false_positives"] == 0 and report["min_visibility"] == 0.25


def test_the_visibility_rule_needs_a_drive_that_knows_visibility() -> None:
    with pytest.raises(EvaluationError, match="no visibility"):
        TrackingAccumulator(min_visibility=0.25).add(*_frame({1: (0, 0, 10, 10)}, {1: 1}))


def test_velocity_is_scored_against_the_whole_object_and_the_visible_centroid_apart() -> None:
    """A track moving at 30 px/s: the visible centroid says 30 (error 0), the whole object 40."""
    acc = TrackingAccumulator(min_track_s=0.0)
    from perception.tracking.bytetrack import ByteTracker

    tracker = ByteTracker()
    for k in range(10):
        truth, _ = _frame({1: (2 + 3 * k, 5, 8 + 3 * k, 9)}, {1: 1}, velocity=30.0)
        truth = replace(truth, velocity=np.array([[30.0, 0.0]]), amodal_velocity=np.array([[40.0, 0.0]]))
        acc.add(truth, tracker.update(truth_as_detections(truth), k * 100_000_000))
    report = acc.report()
    assert report["velocity"]["truth"] == "amodal centroid"
    assert report["velocity_visible"]["truth"] == "visible centroid"
    assert report["velocity"]["samples"] == report["velocity_visible"]["samples"] > 0
    assert report["velocity_visible"]["median_relative_error"] < 0.05
    assert report["velocity"]["median_relative_error"] == pytest.approx(0.25, abs=0.04)  # |30 - 40| / 40


def test_true_velocities_are_central_differences_of_the_visible_centroid() -> None:
    frames = [_frame({1: (2 + 3 * k, 5, 8 + 3 * k, 9)}, {1: 1})[0] for k in range(3)]
    stamps = [0, 100_000_000, 200_000_000]
    with_v = with_true_velocities(stamps, frames)
    np.testing.assert_allclose(with_v[1].velocity, [[30.0, 0.0]])  # 3 px per 0.1 s
    np.testing.assert_allclose(with_v[0].velocity, [[30.0, 0.0]])  # one-sided at the ends


def test_bytetrack_scores_perfectly_on_a_clean_constant_motion_sequence() -> None:
    drive = []
    for k in range(30):
        truth, _ = _frame({1: (k, 2, k + 6, 8), 2: (30 - k // 2, 10, 36 - k // 2, 16)}, {1: 1, 2: 2})
        drive.append(DriveFrame(k * 100_000_000, truth, truth_as_detections(truth)))
    truths = with_true_velocities([f.stamp_ns for f in drive], [f.truth for f in drive])
    drive = [DriveFrame(f.stamp_ns, t, f.detections) for f, t in zip(drive, truths, strict=True)]
    from perception.tracking.bytetrack import ByteTracker

    for variant in ("all frames", "30% dropped", "half rate"):
        report = score([drive], ByteTracker, variant, [1])
        assert report["idf1"] == pytest.approx(1.0) and report["num_switches"] == 0, variant
        assert report["velocity_visible"]["median_relative_error"] < 0.05, variant
        assert report["velocity"]["samples"] == 0  # no amodal truth in a hand-made drive


def test_eval_tracking_json_on_a_rendered_drive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["eval", "--tracking", "--json", "--seed", "11", "--frames", "12"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_name"] == "panoptic-tiny" and out["min_gt_area"] == 100
    for section in ("ground_truth", "model"):
        assert set(out[section]) == {"bytetrack", "bytetrack-mask", "iou"}
    metrics = out["ground_truth"]["bytetrack"]["half rate"]
    for key in ("idf1", "hota", "mota", "num_switches", "num_fragmentations", "switches_per_100_tracks"):
        assert key in metrics
    assert 0.5 < metrics["idf1"] <= 1.0
    assert metrics["velocity"]["truth"] == "amodal centroid" and metrics["velocity"]["samples"] > 0
    lenient = out["ground_truth_visible"]["bytetrack"]["all frames"]
    strict = out["ground_truth"]["bytetrack"]["all frames"]
    assert out["min_visibility"] == 0.25 and lenient["num_unique_objects"] <= strict["num_unique_objects"]
    assert "model: idf1 bytetrack >= iou" in out["targets"]
    assert main(["eval", "--tracking", "--seed", "11", "--frames", "12", "--no-model"]) == 0
    table = capsys.readouterr().out
    assert "IDF1" in table and "half rate" in table and "model " not in table


@pytest.mark.parametrize(("args", "message"), [
    (["--no-model"], "--no-model only applies to --tracking"),
    (["--tracking", "--seed", "1000001"], "training seed"),
    (["--tracking", "--drive", "/nonexistent/drive.mcap"], "does not exist"),
])
def test_eval_tracking_bad_arguments(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", *args]) == 2
    assert message in capsys.readouterr().err
