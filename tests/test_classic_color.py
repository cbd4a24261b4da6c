"""The color method: ranges (with hue wrap), k-means, small regions dropped, holes filled."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.cli import main
from perception.core.segmentation import Segmentation
from perception.models.errors import ModelCardError
from tests.classic_support import card_with, pipeline_for

ROAD, VEGETATION, SKY = 0, 1, 2  # engines/classic-color.toml


def _hsv_image(patches: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]]) -> np.ndarray:
    """A 180x320 frame of HSV patches (x0, y0, x1, y1) -> (h, s, v), converted to BGR; the rest mid grey-blue."""
    hsv = np.zeros((180, 320, 3), np.uint8)
    hsv[:] = (110, 160, 90)  # saturated dark blue: no range of the card matches it
    for (x0, y0, x1, y1), colour in patches:
        hsv[y0:y1, x0:x1] = colour
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _stuff(seg: Segmentation) -> dict[int, int]:
    return dict(zip(seg.segments.class_ids.tolist(), seg.segments.areas.tolist(), strict=True))


def test_ranges_give_one_stuff_segment_per_class_and_leave_the_unmatched_void() -> None:
    frame = _hsv_image([((0, 0, 320, 60), (100, 60, 220)),     # sky: bright, pale
                        ((0, 120, 320, 180), (0, 10, 80)),      # road: grey
                        ((0, 60, 100, 120), (60, 200, 120))])   # vegetation: green
    seg = pipeline_for(card_with("classic-color")).process(frame)
    assert _stuff(seg) == {SKY: 320 * 60, ROAD: 320 * 60, VEGETATION: 100 * 60}
    assert not seg.segments.is_thing.any()
    assert int((seg.id_map == 0).sum()) == 220 * 60  # the blue block matches nothing: void


def test_small_regions_are_dropped_and_holes_take_the_surrounding_class() -> None:
    frame = _hsv_image([((0, 0, 320, 180), (0, 10, 80)),        # all road...
                        ((50, 50, 54, 54), (60, 200, 120))])    # ...but a 4x4 green speck
    seg = pipeline_for(card_with("classic-color")).process(frame)
    assert _stuff(seg) == {ROAD: 320 * 180}
    kept = pipeline_for(card_with("classic-color", min_region=0, fill_holes=False)).process(frame)
    assert _stuff(kept) == {ROAD: 320 * 180 - 16, VEGETATION: 16}
    unfilled = pipeline_for(card_with("classic-color", fill_holes=False)).process(frame)
    assert int((unfilled.id_map == 0).sum()) == 16  # dropped, and without hole filling left void


def test_a_hue_range_through_zero_takes_both_reds() -> None:
    frame = _hsv_image([((0, 0, 160, 180), (175, 200, 150)), ((160, 0, 320, 180), (4, 200, 150))])
    card = card_with("classic-color", ranges=[{"class": "road", "low": [170, 100, 50], "high": [8, 255, 255]}])
    seg = pipeline_for(card).process(frame)
    assert _stuff(seg) == {ROAD: 320 * 180}


def test_kmeans_orders_clusters_from_dark_to_bright_as_the_card_orders_its_classes() -> None:
    frame = np.zeros((180, 320, 3), np.uint8)
    frame[:60] = (230, 230, 230)
    frame[60:120] = (120, 120, 120)
    frame[120:] = (20, 20, 20)
    seg = pipeline_for(card_with("classic-color", mode="kmeans", space="lab")).process(frame)
    assert _stuff(seg) == {ROAD: 320 * 60, VEGETATION: 320 * 60, SKY: 320 * 60}
    assert int(seg.semantic()[0, 0]) == SKY and int(seg.semantic()[179, 0]) == ROAD


@pytest.mark.parametrize(("params", "needle"), [
    ({"ranges": [{"class": "road", "low": [0, 200, 0], "high": [179, 100, 255]}]}, "is not a range in hsv"),
    ({"ranges": [{"class": "road", "low": [0, 0, 0], "high": [200, 255, 255]}]}, "is not a range in hsv"),
    ({"ranges": [{"class": "lawn", "low": [0, 0, 0], "high": [9, 9, 9]}]}, "is not a class of the card"),
    ({"ranges": [{"class": "road", "low": [0, 0], "high": [9, 9, 9]}]}, "is not 3 numbers"),
    ({"ranges": []}, "has no [[params.ranges]]"),
    ({"space": "yuv"}, "space = 'yuv' is not supported"),
    ({"min_region": -1}, "min_region = -1 is out of range"),
])
def test_bad_color_params_are_refused(params: dict[str, object], needle: str) -> None:
    with pytest.raises(ModelCardError, match=None) as caught:
        pipeline_for(card_with("classic-color", **params))
    assert needle in str(caught.value) and caught.value.exit_code == 2


def test_eval_scores_the_color_card_on_forward_drives_by_class_name(capsys: pytest.CaptureFixture[str]) -> None:
    card = Path(__file__).resolve().parent.parent / "engines" / "classic-color.toml"
    assert main(["eval", "--card", str(card), "--seed", "11", "--frames", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["per_class"]) == {"road", "vegetation", "sky"}
    assert report["stuff"]["classes"] >= 2 and report["things"]["classes"] == 0
