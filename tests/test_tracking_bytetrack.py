"""ByteTrack on segments tables: association, lifecycle, kinematics from stamps, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from perception.core.errors import ConfigError
from perception.core.segmentation import Segmentation
from perception.core.tracks import TRACK_STATES
from perception.tracking.bytetrack import ByteTracker
from perception.tracking.detections import Detections

S = 1_000_000_000  # ns per second
T0 = 1_700_000_000 * S


def scene(boxes: list[tuple[float, float, float, float]], classes: list[int], scores: list[float] | None = None,
          size: tuple[int, int] = (120, 160)) -> Segmentation:
    """Rectangles drawn in order (later ones cover earlier ones), all things."""
    id_map = np.zeros(size, np.uint16)
    for i, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        id_map[round(y0):round(y1), round(x0):round(x1)] = i
    n = len(boxes)
    return Segmentation.from_id_map(id_map, np.array(classes, np.int64),
                                    np.array(scores if scores is not None else [0.9] * n), np.ones(n, bool))


def ids_by_class(seg: Segmentation) -> dict[int, int]:
    return dict(zip(seg.segments.class_ids.tolist(), seg.segments.instance_ids.tolist(), strict=True))


def states(seg: Segmentation) -> list[str]:
    assert seg.segments.tracks is not None
    return seg.segments.tracks.state_names()


def test_two_moving_objects_keep_their_ids_and_get_velocities_in_px_per_s() -> None:
    tracker = ByteTracker()
    seen = []
    for k in range(8):  # 10 fps; a car right at 40 px/s, a person down at 20 px/s
        t = k * 0.1
        out = tracker.update(scene([(10 + 40 * t, 10, 30 + 40 * t, 30), (100, 20 + 20 * t, 110, 40 + 20 * t)],
                                   [5, 6]), T0 + round(t * S))
        seen.append(ids_by_class(out))
    assert all(ids == seen[0] for ids in seen)
    tracks = out.segments.tracks
    assert tracks is not None
    assert tracks.state_names() == ["confirmed", "confirmed"]
    np.testing.assert_allclose(tracks.velocity, [[40, 0], [0, 20]], atol=1.5)
    assert tracks.velocity_valid.all()
    np.testing.assert_allclose(tracks.age_s, [0.7, 0.7])
    assert tracks.first_seen_ns.tolist() == [T0, T0]
    assert tracks.hits.tolist() == [8, 8]
    np.testing.assert_allclose(tracks.centroid[1], [105, 30 + 20 * 0.7], atol=0.6)


def test_the_velocity_is_the_centroids_not_the_box_centres() -> None:
    """A parked block with a thin arm growing right at 40 px/s: the box centre moves at 20 px/s,
    the mask's centroid (what `centroid` reports) far slower; the velocity follows the centroid."""
    tracker = ByteTracker()
    centroids = []
    for k in range(10):
        t = k * 0.1
        id_map = np.zeros((60, 160), np.uint16)
        id_map[10:40, 10:40] = 1
        id_map[24:26, 40:round(40 + 40 * t) + 1] = 1
        out = tracker.update(Segmentation.from_id_map(id_map, np.array([5]), np.array([0.9]), np.ones(1, bool)),
                             T0 + round(t * S))
        tracks = out.segments.tracks
        assert tracks is not None
        centroids.append(float(tracks.centroid[0, 0]))
    centroid_speed = (centroids[-1] - centroids[-3]) / 0.2
    assert centroid_speed < 10  # the box centre moves at 20
    assert tracks is not None
    assert tracks.velocity[0, 0] == pytest.approx(centroid_speed, abs=1.5)


def test_a_lost_track_is_predicted_along_its_motion() -> None:
    tracker = ByteTracker()
    for k in range(6):  # 40 px/s right, then hidden for 0.3 s
        tracker.update(scene([(10 + 4 * k, 30, 30 + 4 * k, 50)], [5]), T0 + k * S // 10)
    hidden = tracker.update(scene([], []), T0 + 8 * S // 10)
    predicted = hidden.predicted
    assert predicted is not None and len(predicted) == 1
    np.testing.assert_allclose(predicted.velocity[0], [40, 0], atol=2.0)
    np.testing.assert_allclose(predicted.centroid[0], [20 + 4 * 8, 40], atol=1.5)  # where it is now
    np.testing.assert_allclose(predicted.lost_s, [0.3])


def test_the_same_motion_reads_the_same_with_frames_dropped_or_at_half_rate() -> None:
    """dt comes from the stamps: a 30 px/s object is 30 px/s at 10 fps, 5 fps or with holes."""
    schedules = {"10 fps": [k * 0.1 for k in range(20)], "5 fps": [k * 0.2 for k in range(10)],
                 "holes": [0.0, 0.1, 0.4, 0.5, 0.9, 1.0, 1.1, 1.5, 1.6, 1.9]}
    for name, times in schedules.items():
        tracker = ByteTracker()
        for t in times:
            out = tracker.update(scene([(20 + 30 * t, 30, 40 + 30 * t, 50)], [5]), T0 + round(t * S))
        tracks = out.segments.tracks
        assert tracks is not None
        assert out.segments.instance_ids.tolist() == [1], name
        np.testing.assert_allclose(tracks.velocity[0], [30, 0], atol=1.0, err_msg=name)


def test_lifecycle_tentative_confirmed_lost_then_removed_and_ids_never_reused() -> None:
    tracker = ByteTracker(min_hits=3, max_lost_s=0.5)
    car = [(40.0, 40.0, 60.0, 60.0)]
    first = tracker.update(scene(car, [5]), T0)
    assert states(first) == ["tentative"]
    assert states(tracker.update(scene(car, [5]), T0 + S // 10)) == ["tentative"]
    third = tracker.update(scene(car, [5]), T0 + 2 * S // 10)
    assert states(third) == ["confirmed"]
    track_id = int(third.segments.instance_ids[0])
    # unseen for 0.4 s: lost but predicted, and the same id when it comes back
    for k in range(3, 7):
        unseen = tracker.update(scene([], []), T0 + k * S // 10)
    predicted = unseen.predicted
    assert predicted is not None and predicted.instance_ids.tolist() == [track_id]
    assert not unseen.segments.instance_ids.size and not unseen.id_map.any()  # never drawn, never listed
    np.testing.assert_allclose(predicted.lost_s, [0.4])
    np.testing.assert_allclose(predicted.bboxes, [[40, 40, 60, 60]], atol=0.5)  # a parked car stays put
    assert predicted.class_ids.tolist() == [5] and predicted.first_seen_ns.tolist() == [T0]
    back = tracker.update(scene(car, [5]), T0 + 7 * S // 10)
    assert back.segments.instance_ids.tolist() == [track_id] and states(back) == ["confirmed"]
    assert back.predicted is not None and len(back.predicted) == 0
    # unseen for more than max_lost_s of source time: removed; a new object there gets a new id
    tracker.update(scene([], []), T0 + 13 * S // 10)
    assert tracker.live_tracks() == 0
    again = tracker.update(scene(car, [5]), T0 + 14 * S // 10)
    assert int(again.segments.instance_ids[0]) > track_id


def test_a_tentative_track_missed_once_is_dropped() -> None:
    tracker = ByteTracker(min_hits=3)
    tracker.update(scene([(40, 40, 60, 60)], [5]), T0)
    tracker.update(scene([], []), T0 + S // 10)
    assert tracker.live_tracks() == 0


def test_low_score_detections_keep_a_confirmed_track_but_never_start_one() -> None:
    tracker = ByteTracker()
    box = [(40.0, 40.0, 60.0, 60.0)]
    for k in range(3):
        confirmed = tracker.update(scene(box, [5], [0.9]), T0 + k * S // 10)
    weak = tracker.update(scene(box, [5], [0.3]), T0 + 3 * S // 10)  # partly occluded, say
    assert weak.segments.instance_ids.tolist() == confirmed.segments.instance_ids.tolist()
    fresh = ByteTracker()
    assert fresh.update(scene(box, [5], [0.3]), T0).segments.instance_ids.tolist() == [0]
    assert states(fresh.update(scene(box, [5], [0.05]), T0 + S // 10)) == ["none"]


def test_matching_never_crosses_classes() -> None:
    tracker = ByteTracker()
    car = tracker.update(scene([(40, 40, 60, 60)], [5]), T0)
    person = tracker.update(scene([(40, 40, 60, 60)], [6]), T0 + S // 10)
    assert person.segments.instance_ids[0] != car.segments.instance_ids[0]


def test_mask_iou_tells_apart_objects_that_share_a_box() -> None:
    """Two combs interleaved in one box: box IoU cannot tell them apart, mask IoU can."""
    def combs(first_even: bool) -> Segmentation:
        id_map = np.zeros((60, 80), np.uint16)
        even, odd = (1, 2) if first_even else (2, 1)
        id_map[10:30:2, 20:40] = even
        id_map[11:31:2, 20:40] = odd
        # table row 1 is the even comb in the first frame and the odd comb in the second
        return Segmentation.from_id_map(id_map, np.array([5, 5]), np.array([0.9, 0.9]), np.ones(2, bool))

    tracker = ByteTracker(match="mask")
    first = tracker.update(combs(True), T0)
    second = tracker.update(combs(False), T0 + S // 10)
    even_first = first.segments.instance_ids[0]
    even_second = second.segments.instance_ids[1]
    assert even_first == even_second
    assert set(first.segments.instance_ids.tolist()) == set(second.segments.instance_ids.tolist())


def test_stuff_rows_stay_untracked() -> None:
    id_map = np.ones((20, 20), np.uint16)
    id_map[5:10, 5:10] = 2
    seg = Segmentation.from_id_map(id_map, np.array([0, 5]), np.array([1.0, 0.9]), np.array([False, True]))
    out = ByteTracker().update(seg, T0)
    assert out.segments.instance_ids.tolist() == [0, 1]
    assert states(out) == ["none", "tentative"]
    assert out.segments.tracks is not None
    assert out.segments.tracks.centroid[0].tolist() == [0.0, 0.0]


def test_a_stamp_that_goes_backwards_resets_the_tracks_and_says_so() -> None:
    tracker = ByteTracker()
    box = [(40.0, 40.0, 60.0, 60.0)]
    for k in range(4):
        before = tracker.update(scene(box, [5]), T0 + k * S // 10)
    looped = tracker.update(scene(box, [5]), T0)  # a replay starting over
    assert looped.segments.instance_ids[0] > before.segments.instance_ids[0]  # new id, never a reused one
    tracks = looped.segments.tracks
    assert tracks is not None
    assert states(looped) == ["tentative"] and tracks.velocity.tolist() == [[0.0, 0.0]]
    reports = tracker.reports.take()
    assert len(reports) == 1 and not reports[0].error
    assert reports[0].detail.startswith("tracks reset: stamp went back 0.300 s")
    assert tracker.reports.counters()["resets"] == 1
    # the same stamp twice is no step back: nothing is reset
    tracker.update(scene(box, [5]), T0)
    assert tracker.reports.take() == []


def test_many_frames_without_detections_then_objects_again() -> None:
    tracker = ByteTracker()
    tracker.update(scene([(40, 40, 60, 60)], [5]), T0)
    for k in range(1, 500):
        out = tracker.update(scene([], []), T0 + k * S // 10)
        assert len(out.segments) == 0
    assert tracker.live_tracks() == 0
    assert tracker.update(scene([(40, 40, 60, 60)], [5]), T0 + 500 * S // 10).segments.instance_ids.tolist() == [2]


def test_a_thousand_detections_are_capped_and_counted() -> None:
    tracker = ByteTracker(max_detections=256)
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 2000, (1000, 2))
    boxes = np.concatenate([xy, xy + 10], axis=1)
    scores = rng.uniform(0.6, 1.0, 1000)
    tracked = tracker.step(Detections.of(boxes, scores, np.zeros(1000)), T0)
    assert int((tracked.instance_ids > 0).sum()) == 256
    assert tracked.instance_ids[np.argsort(-scores)[:256]].all()  # the best scores are the ones kept
    assert tracker.reports.counters()["capped"] == 744
    (report,) = tracker.reports.take()
    assert "capped 744 detection(s) over max_detections = 256" in report.detail


def test_nan_boxes_and_scores_are_dropped_with_an_error_report() -> None:
    tracker = ByteTracker()
    boxes = np.array([[10, 10, 20, 20], [np.nan, 5, 9, 9], [30, 30, 40, 40], [50, 50, 50, 60]], float)
    tracked = tracker.step(Detections.of(boxes, np.array([0.9, 0.9, np.nan, 0.9]), np.full(4, 5)), T0)
    assert (tracked.instance_ids > 0).tolist() == [True, False, False, False]
    assert [TRACK_STATES[s] for s in tracked.state.tolist()] == ["tentative", "none", "none", "none"]
    (report,) = tracker.reports.take()
    assert report.error and "dropped 3 detection(s) with non-finite or empty boxes or scores" in report.detail
    # a NaN score in a segments table takes the same path
    seg = scene([(10, 10, 20, 20)], [5], [float("nan")])
    assert tracker.update(seg, T0 + S // 10).segments.instance_ids.tolist() == [0]
    assert tracker.reports.take()[0].error


def test_memory_stays_flat_over_a_long_drive_with_ever_new_objects() -> None:
    tracker = ByteTracker(max_lost_s=0.5)
    peak = 0
    for k in range(3000):  # 5 minutes at 10 fps, a new object every frame, each seen for 2 s
        boxes = [(float((j * 37) % 150), float((j * 11) % 100), float((j * 37) % 150 + 6), float((j * 11) % 100 + 6))
                 for j in range(max(0, k - 19), k + 1)]
        tracker.update(scene(boxes, [5] * len(boxes)), T0 + k * S // 10)
        peak = max(peak, tracker.live_tracks())
    assert peak <= 20 + 5 + 1  # the visible ones plus those lost for at most 0.5 s
    assert tracker.reports.counters()["created"] >= 3000 - 1  # ids kept counting up


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"match": "polygon"}, "match = 'polygon' is not a known association: use one of 'box', 'mask'"),
        ({"low_threshold": 0.7}, "low_threshold = 0.7 is above high_threshold = 0.5"),
        ({"max_lost_s": float("nan")}, "max_lost_s = nan must be above 0"),
        ({"min_hits": 0}, "min_hits = 0 must be at least 1"),
        ({"match_iou": 1.5}, "match_iou = 1.5 is outside [0, 1]"),
    ],
)
def test_bad_settings_name_the_key_and_the_fix(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ByteTracker(**settings)
