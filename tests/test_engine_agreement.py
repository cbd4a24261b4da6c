"""The swap check's measure: area of segments one engine has and the other does not."""

from __future__ import annotations

import numpy as np

from perception.core.segmentation import Segmentation
from perception.runtime.agreement import unmatched_area_percent


def _seg(id_map: np.ndarray, classes: list[int]) -> Segmentation:
    n = len(classes)
    return Segmentation.from_id_map(id_map.astype(np.uint32), np.array(classes, np.int32),
                                    np.ones(n, np.float32), np.array([c == 5 for c in classes]))


def _road_with_car(x0: int, x1: int) -> np.ndarray:
    ids = np.ones((40, 50), np.uint32)  # 1 = road
    ids[10:30, x0:x1] = 2  # 2 = a car
    return ids


def test_boundary_noise_is_no_disagreement() -> None:
    a = _seg(_road_with_car(10, 30), [0, 5])
    b = _seg(_road_with_car(11, 31), [0, 5])  # every car boundary pixel moved by one
    assert unmatched_area_percent(a, b) == 0.0


def test_a_lost_or_split_segment_counts_its_area() -> None:
    a = _seg(_road_with_car(10, 30), [0, 5])
    lost = _seg(np.ones((40, 50), np.uint32), [0])
    assert unmatched_area_percent(a, lost) == 100.0 * 20 * 20 / (40 * 50)
    split = _road_with_car(10, 30)
    split[10:30, 20:30] = 3  # the car as two instances: neither half matches it with IoU > 0.5
    assert unmatched_area_percent(a, _seg(split, [0, 5, 5])) == 100.0 * 20 * 20 / (40 * 50)


def test_another_class_is_no_match() -> None:
    a = _seg(_road_with_car(10, 30), [0, 5])
    b = _seg(_road_with_car(10, 30), [0, 3])
    assert unmatched_area_percent(a, b) == 100.0 * 20 * 20 / (40 * 50)
