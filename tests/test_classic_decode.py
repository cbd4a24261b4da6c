"""The classic label decoder's shortcut (the table counted on the small map) equals the generic path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.core.segmentation import Segmentation
from perception.models.card import InputSpec
from perception.models.classic.base import CLASSES, LABELS, LabelDecoder
from perception.models.preprocess import Preprocessor
from tests.classic_support import card_with


@pytest.mark.parametrize(("source", "resize"), [((640, 360), "stretch"), ((768, 576), "letterbox"),
                                                ((641, 359), "letterbox"), ((333, 211), "stretch"),
                                                ((1280, 720), "letterbox"), ((160, 90), "stretch")])
def test_decoded_table_equals_counting_on_the_source_sized_map(source: tuple[int, int], resize: str) -> None:
    card = card_with("classic-motion")
    decoder = LabelDecoder(card)
    geometry = Preprocessor(InputSpec("image", 320, 180, "NHWC", "BGR", "uint8", resize=resize)).geometry(
        source[1], source[0])
    rng = np.random.default_rng(source[0])
    for _ in range(10):
        n = int(rng.integers(1, 30))
        blocks = rng.integers(1, n + 1, (180 // 6, 320 // 6)).astype(np.uint16)
        labels = cv2.resize(blocks, (320, 180), interpolation=cv2.INTER_NEAREST)
        labels[rng.random(labels.shape) < 0.01] = 1  # single pixels: the hardest boxes and areas
        classes = rng.integers(0, 4, n).astype(np.int32)
        got = decoder.decode({LABELS: labels, CLASSES: classes}, geometry)
        want = Segmentation.from_id_map(geometry.map_to_source(labels), classes, np.ones(n, np.float32),
                                        np.isin(classes, [1, 2, 3]))
        assert np.array_equal(got.id_map, want.id_map)
        for field in ("ids", "class_ids", "instance_ids", "is_thing", "scores", "bboxes", "areas"):
            assert np.array_equal(getattr(got.segments, field), getattr(want.segments, field)), field
