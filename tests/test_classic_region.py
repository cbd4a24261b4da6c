"""The region method: Felzenszwalb regions (scikit-image), each its own stuff segment."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from perception.core.errors import MissingDependencyError
from tests.classic_support import card_with, pipeline_for

pytest.importorskip("skimage", reason="the region method needs the [classic] extra (scikit-image)")


def _blocks() -> np.ndarray:
    frame = np.zeros((180, 320, 3), np.uint8)
    frame[:, :100] = (200, 40, 40)
    frame[:, 100:220] = (40, 200, 40)
    frame[:, 220:] = (40, 40, 200)
    return frame


def test_flat_blocks_become_one_region_each() -> None:
    # no smoothing: a blurred edge would be a thin region of its own
    seg = pipeline_for(card_with("classic-region", sigma=0.0)).process(_blocks())
    assert sorted(seg.segments.areas.tolist()) == [180 * 100, 180 * 100, 180 * 120]
    assert set(seg.segments.class_ids.tolist()) == {0} and not seg.segments.is_thing.any()
    assert int(seg.id_map[90, 50]) != int(seg.id_map[90, 150]) != int(seg.id_map[90, 300])


def test_max_regions_keeps_the_largest_and_voids_the_rest() -> None:
    seg = pipeline_for(card_with("classic-region", sigma=0.0, max_regions=1)).process(_blocks())
    assert seg.segments.areas.tolist() == [180 * 120]
    assert int((seg.id_map == 0).sum()) == 180 * 200


def test_without_scikit_image_the_card_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)  # import now fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"perception-node\[classic\]"):
        pipeline_for(card_with("classic-region"))
