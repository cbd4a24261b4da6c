"""LatencyBook percentiles and the IoU tracker's persistent ids."""

from __future__ import annotations

import numpy as np
import pytest

from perception.core.frame import STAGES
from perception.core.segmentation import Segmentation
from perception.runtime.latency import LatencyBook, format_table
from perception.tracking.iou import IouTracker


def _stamps(start: int, step: int) -> dict[str, int]:
    return {stage.value: start + i * step for i, stage in enumerate(STAGES)}


def test_stage_times_add_up_to_end_to_end() -> None:
    book = LatencyBook(window=10)
    for i in range(5):
        book.add(_stamps(i * 1_000_000_000, 1_000_000 * (i + 1)))
    snap = book.snapshot()
    e2e = snap["end_to_end"]
    assert e2e["count"] == 5
    gaps = len(STAGES) - 1
    assert e2e["max_ns"] == gaps * 5_000_000  # one gap of 5 ms per stage in the slowest frame
    # service is dequeue -> publish: every gap after the dequeue stamp
    assert snap["service"]["max_ns"] == (gaps - 2) * 5_000_000
    assert snap["stages"]["inference"]["p50_ns"] == 3_000_000
    assert snap["fps"] == pytest.approx(1.0, rel=0.01)
    assert "end_to_end" in format_table(snap)


def test_window_is_bounded_and_keeps_the_newest() -> None:
    book = LatencyBook(window=4)
    for i in range(10):
        book.add(_stamps(i * 10**9, 1_000_000 if i < 6 else 9_000_000))
    snap = book.snapshot()
    assert snap["window_frames"] == 4
    assert snap["stages"]["publish"]["p50_ns"] == 9_000_000


def _scene(boxes: list[tuple[int, int, int, int]], class_ids: list[int]) -> Segmentation:
    id_map = np.zeros((60, 80), np.uint16)
    for i, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        id_map[y0:y1, x0:x1] = i
    n = len(boxes)
    return Segmentation.from_id_map(id_map, np.array(class_ids), np.ones(n), np.ones(n, bool))


def test_tracker_keeps_ids_for_moving_objects_and_gives_new_ones() -> None:
    tracker = IouTracker(iou_threshold=0.3, max_missed=1)
    first = tracker.update(_scene([(10, 10, 20, 20), (40, 10, 50, 20)], [5, 6]))
    ids = dict(zip(first.segments.class_ids.tolist(), first.segments.instance_ids.tolist(), strict=True))
    moved = tracker.update(_scene([(12, 10, 22, 20), (41, 11, 51, 21)], [5, 6]))
    assert dict(zip(moved.segments.class_ids.tolist(), moved.segments.instance_ids.tolist(), strict=True)) == ids
    # a different class at the same place is a new object
    swapped = tracker.update(_scene([(12, 10, 22, 20)], [6]))
    assert swapped.segments.instance_ids[0] not in ids.values()


def test_tracker_forgets_after_max_missed_and_leaves_stuff_at_zero() -> None:
    tracker = IouTracker(max_missed=1)
    first = tracker.update(_scene([(10, 10, 20, 20)], [5]))
    tracker.update(_scene([], []))
    tracker.update(_scene([], []))
    again = tracker.update(_scene([(10, 10, 20, 20)], [5]))
    assert again.segments.instance_ids[0] != first.segments.instance_ids[0]
    stuff = Segmentation.from_id_map(np.ones((5, 5), np.uint16), np.array([0]), np.ones(1), np.zeros(1, bool))
    assert tracker.update(stuff).segments.instance_ids.tolist() == [0]


def test_tracker_never_matches_across_classes_even_with_a_zero_threshold() -> None:
    tracker = IouTracker(iou_threshold=0.0)
    first = tracker.update(_scene([(0, 0, 10, 10)], [5]))
    other = tracker.update(_scene([(60, 40, 70, 50)], [7]))
    assert other.segments.instance_ids[0] != first.segments.instance_ids[0]
