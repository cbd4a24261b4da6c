"""How far one engine's segmentation is from another's on the same input, for the swap check.

Reduced precision legitimately moves boundary pixels (FP16 changes the class of 0.85 % of the
pixels of the tests' tiny model), so a per-pixel comparison would refuse good plans. A wrong
plan loses, merges or invents segments. So, as PQ matches segments: a segment of one result is
matched when the other has a segment of the same class overlapping it with IoU above 0.5 (at
most one can), and the disagreement is the share of the image covered by unmatched segments,
whichever side has more. A correct plan scores 0 whatever its boundary noise; a miscompiled one scores the area of
everything it got wrong.
"""

from __future__ import annotations

import numpy as np

from perception.core.segmentation import Segmentation

MATCH_IOU = 0.5


def unmatched_area_percent(a: Segmentation, b: Segmentation) -> float:
    """Percent of the image in segments of a or b that the other does not match (the larger of the two)."""
    if a.id_map.shape != b.id_map.shape:
        raise ValueError(f"id maps differ in shape: {a.id_map.shape} vs {b.id_map.shape}")
    ids_a, ids_b = a.id_map.astype(np.int64).ravel(), b.id_map.astype(np.int64).ravel()
    width = int(ids_b.max(initial=0)) + 1
    pairs, overlap = np.unique(ids_a * width + ids_b, return_counts=True)
    pair_a, pair_b = pairs // width, pairs % width
    area_a = dict(zip(*np.unique(ids_a, return_counts=True), strict=True))
    area_b = dict(zip(*np.unique(ids_b, return_counts=True), strict=True))
    class_a = dict(zip(a.segments.ids.tolist(), a.segments.class_ids.tolist(), strict=True))
    class_b = dict(zip(b.segments.ids.tolist(), b.segments.class_ids.tolist(), strict=True))
    matched_a: set[int] = set()
    matched_b: set[int] = set()
    for sa, sb, inter in zip(pair_a.tolist(), pair_b.tolist(), overlap.tolist(), strict=True):
        same_class = sa in class_a and sb in class_b and class_a[sa] == class_b[sb]
        if same_class and inter / (area_a[sa] + area_b[sb] - inter) > MATCH_IOU:
            matched_a.add(sa)
            matched_b.add(sb)
    lost_a = sum(int(area_a[s]) for s in class_a if s not in matched_a and s in area_a)
    lost_b = sum(int(area_b[s]) for s in class_b if s not in matched_b and s in area_b)
    return 100.0 * max(lost_a, lost_b) / max(ids_a.size, 1)
