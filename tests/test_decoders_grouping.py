"""Panoptic-DeepLab grouping options: class-aware centers and a maximum center distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.models.card import ClassInfo, InputSpec, ModelCard
from perception.models.decoders.panoptic_deeplab import PanopticDeepLabDecoder
from perception.models.errors import DecodeError
from perception.models.preprocess import Preprocessor

CLASSES = (ClassInfo(0, "road", False), ClassInfo(1, "car", True), ClassInfo(2, "person", True))
H, W = 40, 60


def _decoder(**params: object) -> PanopticDeepLabDecoder:
    base = {"center_threshold": 0.5, "nms_kernel": 3, "min_thing_area": 1, "min_stuff_area": 1}
    card = ModelCard("t", Path("t.onnx"), "panoptic_deeplab", InputSpec("image", W, H), CLASSES,
                     {**base, **params})
    return PanopticDeepLabDecoder(card)


def _heads() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A car (center at 10,10) and, 30 px to its right, a person whose center head missed it."""
    semantic = np.zeros((H, W), np.int32)
    semantic[5:16, 5:16] = 1
    semantic[5:16, 35:41] = 2
    heat = np.zeros((H, W), np.float32)
    heat[10, 10] = 1.0
    offsets = np.zeros((2, H, W), np.float32)
    ys, xs = np.mgrid[0:H, 0:W]
    car = semantic == 1
    offsets[0][car] = 10 - ys[car]
    offsets[1][car] = 10 - xs[car]
    return semantic, heat, offsets


def _decode(decoder: PanopticDeepLabDecoder) -> dict[int, int]:
    semantic, heat, offsets = _heads()
    geometry = Preprocessor(InputSpec("image", W, H)).geometry(H, W)
    result = decoder.decode_heads(semantic, heat, offsets, geometry)
    segs = result.segments
    return {int(c): int(a) for c, a, t in zip(segs.class_ids, segs.areas, segs.is_thing, strict=True) if t}


def test_plain_grouping_lets_the_car_swallow_the_unclaimed_person() -> None:
    assert _decode(_decoder()) == {1: 11 * 11 + 11 * 6}  # majority class car, mask includes the person


def test_class_aware_grouping_leaves_the_person_void_instead() -> None:
    assert _decode(_decoder(class_aware_grouping=True)) == {1: 11 * 11}


def test_max_center_distance_leaves_far_pixels_void() -> None:
    assert _decode(_decoder(max_center_distance=15.0)) == {1: 11 * 11}


def test_folded_argmax_with_class_ids_outside_the_card_is_a_decode_error() -> None:
    decoder = _decoder(semantic_argmax=True)
    semantic, heat, offsets = _heads()
    semantic[0, 0] = 9  # the model knows more classes than the card lists
    outputs = {"semantic_logits": semantic[None].astype(np.int64), "center_heatmap": heat[None, None],
               "offsets": offsets[None]}
    geometry = Preprocessor(InputSpec("image", W, H)).geometry(H, W)
    with pytest.raises(DecodeError, match=r"outside 0\.\.2"):
        decoder.decode(outputs, geometry)


def _decode_with_confidence(decoder: PanopticDeepLabDecoder, confidence: np.ndarray) -> tuple[dict[int, int], int]:
    semantic, heat, offsets = _heads()
    geometry = Preprocessor(InputSpec("image", W, H)).geometry(H, W)
    result = decoder.decode_heads(semantic, heat, offsets, geometry, confidence)
    segs = result.segments
    things = {int(c): int(a) for c, a, t in zip(segs.class_ids, segs.areas, segs.is_thing, strict=True) if t}
    return things, int((result.id_map == 0).sum())


def test_unsure_thing_pixels_are_left_void_not_given_to_a_neighbour() -> None:
    confidence = np.full((H, W), 0.9, np.float32)
    confidence[5:16, 13:16] = 0.5  # the car's right edge: the model hesitates there
    sure = _decoder(class_aware_grouping=True, min_thing_confidence=0.65)
    things, void = _decode_with_confidence(sure, confidence)
    assert things == {1: 11 * 8}
    assert void == 11 * 3 + 11 * 6  # the unsure edge and the unclaimed person
    # off by default: the same heads keep the whole car
    assert _decode_with_confidence(_decoder(class_aware_grouping=True), confidence)[0] == {1: 11 * 11}


def test_unsure_stuff_pixels_stay_stuff() -> None:
    confidence = np.full((H, W), 0.3, np.float32)
    things, void = _decode_with_confidence(_decoder(class_aware_grouping=True, min_thing_confidence=0.65), confidence)
    assert things == {} and void == 11 * 11 + 11 * 6  # every thing pixel unsure; road untouched


@pytest.mark.parametrize(("params", "message"), [
    ({"min_thing_confidence": 1.0}, "not in"),
    ({"min_thing_confidence": -0.1}, "not in"),
    ({"min_thing_confidence": 0.5, "semantic_argmax": True}, "only the class map"),
])
def test_bad_min_thing_confidence_is_refused(params: dict[str, object], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        _decoder(**params)
