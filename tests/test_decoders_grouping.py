"""Panoptic-DeepLab grouping options: class-aware centers and a maximum center distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.models.card import ClassInfo, InputSpec, ModelCard
from perception.models.decoders.panoptic_deeplab import PanopticDeepLabDecoder
from perception.models.errors import DecoderError
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
    with pytest.raises(DecoderError, match=r"outside 0\.\.2"):
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


def test_an_instance_the_model_is_nowhere_sure_of_is_dropped() -> None:
    confidence = np.full((H, W), 0.95, np.float32)
    confidence[5:16, 5:16] = 0.8  # the whole car lukewarm: sure enough per pixel, nowhere sure
    rule = {"class_aware_grouping": True, "min_thing_confidence": 0.65, "min_sure_fraction": 0.25}
    assert _decode_with_confidence(_decoder(**rule), confidence) == ({}, 11 * 11 + 11 * 6)
    confidence[5:8, 5:16] = 0.95  # 3 of 11 rows sure: 27% of the car
    assert _decode_with_confidence(_decoder(**rule), confidence)[0] == {1: 11 * 11}
    assert _decode_with_confidence(_decoder(**rule, sure_confidence=0.99), confidence)[0] == {}
    # off by default, and without a probability map (argmaxed heads) there is nothing to judge
    assert _decode_with_confidence(_decoder(class_aware_grouping=True), np.full((H, W), 0.8, np.float32))[0] \
        == {1: 11 * 11}
    assert _decode(_decoder(**rule)) == {1: 11 * 11}


@pytest.mark.parametrize(("params", "message"), [
    ({"min_thing_confidence": 1.0}, "not in"),
    ({"min_thing_confidence": -0.1}, "not in"),
    ({"min_thing_confidence": 0.5, "semantic_argmax": True}, "only the class map"),
    ({"min_sure_fraction": 0.2, "semantic_argmax": True}, "min_sure_fraction needs the class probability"),
    ({"min_sure_fraction": 1.5}, "share in"),
    ({"min_sure_fraction": 0.2, "sure_confidence": 0.0}, "share in"),
])
def test_bad_min_thing_confidence_is_refused(params: dict[str, object], message: str) -> None:
    with pytest.raises(DecoderError, match=message):
        _decoder(**params)


def _things(decoder: PanopticDeepLabDecoder, semantic: np.ndarray, heat: np.ndarray,
            offsets: np.ndarray) -> list[int]:
    geometry = Preprocessor(InputSpec("image", W, H)).geometry(H, W)
    segs = decoder.decode_heads(semantic, heat, offsets, geometry).segments
    return sorted(int(a) for a, t in zip(segs.areas, segs.is_thing, strict=True) if t)


def test_centers_on_things_keeps_a_peak_that_a_road_peak_suppressed() -> None:
    semantic, heat, offsets = _heads()
    heat[10, 17] = 1.0  # a stronger peak just off the car, on road, inside the NMS window
    heat[10, 10] = 0.9
    aware = {"class_aware_grouping": True, "nms_kernel": 15}
    assert _things(_decoder(**aware), semantic, heat, offsets) == []  # the road peak claims nothing
    assert _things(_decoder(centers_on_things=True, **aware), semantic, heat, offsets) == [11 * 11]


def _big_and_small_car() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 20x20 car (center 15,15) and a 5x5 car (center 14,29) to its right. The big car's three
    right-hand columns point 7-9 px short of their center: nearer the small car's."""
    semantic = np.zeros((H, W), np.int32)
    semantic[5:25, 5:25] = 1
    semantic[12:17, 27:32] = 1
    heat = np.zeros((H, W), np.float32)
    heat[15, 15] = heat[14, 29] = 1.0
    offsets = np.zeros((2, H, W), np.float32)
    ys, xs = np.mgrid[0:H, 0:W]
    big = np.zeros((H, W), bool)
    big[5:25, 5:25] = True
    offsets[0][big], offsets[1][big] = 15 - ys[big], 15 - xs[big]
    far = big & (xs >= 22)
    offsets[0][far], offsets[1][far] = 15 - ys[far], 23 - xs[far]  # all of them land at (15, 23)
    small = semantic.astype(bool) & ~big
    offsets[0][small], offsets[1][small] = 14 - ys[small], 29 - xs[small]
    return semantic, heat, offsets


def test_size_scaled_grouping_gives_a_big_instance_its_far_pixels_back() -> None:
    heads = _big_and_small_car()
    plain = _things(_decoder(class_aware_grouping=True, max_center_distance=20.0), *heads)
    assert plain == [5 * 5 + 20 * 3, 20 * 17]  # the small car took the big one's right edge
    scaled = _decoder(class_aware_grouping=True, max_center_distance=20.0, grouping_size_exponent=0.5)
    assert _things(scaled, *heads) == [5 * 5, 20 * 20]
    # the same without class-aware grouping (one distance matrix for all classes)
    assert _things(_decoder(grouping_size_exponent=0.5), *heads) == [5 * 5, 20 * 20]


@pytest.mark.parametrize("exponent", [-0.5, 2.5])
def test_bad_grouping_size_exponent_is_refused(exponent: float) -> None:
    with pytest.raises(DecoderError, match="grouping_size_exponent"):
        _decoder(grouping_size_exponent=exponent)


def test_folded_centers_off_things_are_dropped() -> None:
    """A graph folded before centers_on_things existed gives peaks on road too: the decoder drops them."""
    semantic, _, offsets = _heads()
    outputs = {"semantic_logits": semantic[None, None].astype(np.int32), "offsets": offsets[None],
               "center_scores": np.array([[1.0, 0.9]], np.float32),
               "center_indices": np.array([[10 * W + 25, 10 * W + 10]], np.int64)}  # road, then the car
    folded = {"semantic_argmax": True, "centers_folded": True, "class_aware_grouping": False}
    geometry = Preprocessor(InputSpec("image", W, H)).geometry(H, W)
    plain = _decoder(**folded).decode(outputs, geometry).segments
    masked = _decoder(centers_on_things=True, **folded).decode(outputs, geometry).segments
    assert sorted(plain.areas[plain.is_thing].tolist()) == [11 * 6, 11 * 11]  # the road peak took the person
    assert masked.areas[masked.is_thing].tolist() == [11 * 11 + 11 * 6]
