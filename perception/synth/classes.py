"""The eight classes of the synthetic world (ids fixed: the shipped model is trained on them)."""

from __future__ import annotations

ROAD, SIDEWALK, VEGETATION, SKY, BUILDING, CAR, PERSON, TRAFFIC_SIGN = range(8)

CLASS_NAMES: tuple[str, ...] = ("road", "sidewalk", "vegetation", "sky", "building",
                                "car", "person", "traffic_sign")
THING_CLASSES: frozenset[int] = frozenset({CAR, PERSON, TRAFFIC_SIGN})
NUM_CLASSES = len(CLASS_NAMES)

# Segment ids in the ground-truth id map: stuff class c -> c + 1; thing instance i -> THING_ID_BASE + i.
THING_ID_BASE = 1000
# Thing instances with fewer visible pixels than this are void in the ground truth: nobody can label them.
MIN_THING_PIXELS = 20


def stuff_segment_id(class_id: int) -> int:
    return class_id + 1


def is_thing(class_id: int) -> bool:
    return class_id in THING_CLASSES
