"""The panoptic fusion rules and the NMS helpers, through their public functions."""

from __future__ import annotations

import numpy as np
import pytest

from perception.core.segmentation import Segmentation, segment_stats
from perception.models.decoders.fusion import Canvas, UnsureStuff, classes_and_confidence
from perception.models.decoders.nms import box_iou_matrix, class_aware_nms, top_k
from perception.models.errors import DecoderError


def square(size: int, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y0:y0 + h, x0:x0 + w] = True
    return mask


def test_higher_score_wins_and_mostly_hidden_instances_are_dropped() -> None:
    canvas = Canvas(100, 100)
    assert canvas.paste_instance(square(40, 0, 0, 40, 40), 10, 10, class_id=1, score=0.9)
    # 30x40 mask, 10x40 of it free: 25% visible < 50%, dropped
    assert not canvas.paste_instance(square(40, 0, 0, 30, 40), 10, 20, class_id=2, score=0.8)
    # 40x40 mask shifted by 20 columns: half visible, kept with only its free part
    assert canvas.paste_instance(square(40, 0, 0, 40, 40), 30, 10, class_id=3, score=0.7)
    seg = canvas.segmentation()
    assert seg.segments.class_ids.tolist() == [1, 3]
    assert seg.segments.bboxes.tolist() == [[10, 10, 50, 50], [50, 10, 70, 50]]
    assert seg.segments.areas.tolist() == [1600, 800]


def test_stuff_fills_free_pixels_only_and_respects_min_area() -> None:
    canvas = Canvas(50, 50)
    canvas.paste_instance(square(10, 0, 0, 10, 10), 0, 0, class_id=5, score=1.0)
    semantic = np.zeros((50, 50), np.int32)
    semantic[40:, :] = 1
    semantic[0, 49] = 2  # one pixel of class 2: under min_area
    canvas.fill_stuff(semantic, [0, 1, 2], min_area=2)
    seg = canvas.segmentation()
    assert seg.segments.class_ids.tolist() == [5, 0, 1]
    assert seg.segments.is_thing.tolist() == [True, False, False]
    assert seg.segments.areas.tolist() == [100, 50 * 50 - 100 - 500 - 1, 500]
    assert seg.id_map[0, 49] == 0


def test_tracked_stats_match_a_full_recount() -> None:
    rng = np.random.default_rng(0)
    canvas = Canvas(120, 160)
    for k in range(30):
        mask = rng.random((30, 40)) > 0.3
        canvas.paste_instance(mask, int(rng.integers(0, 120)), int(rng.integers(0, 90)), k % 4, 1 - k / 100,
                              overlap_threshold=0.2)
    canvas.fill_stuff(rng.integers(0, 3, (120, 160)), [0, 1, 2], min_area=10)
    seg = canvas.segmentation()
    areas, boxes = segment_stats(seg.id_map, len(seg.segments))
    assert seg.segments.areas.tolist() == areas[1:].tolist()
    assert seg.segments.bboxes.tolist() == boxes[1:].tolist()
    again = Segmentation.from_id_map(seg.id_map, seg.segments.class_ids, seg.segments.scores, seg.segments.is_thing)
    assert (again.segments.bboxes == seg.segments.bboxes).all()


def test_paste_outside_the_canvas_is_a_bug_not_a_crop() -> None:
    with pytest.raises(ValueError, match="leaves the canvas"):
        Canvas(10, 10).paste_instance(np.ones((5, 5), bool), 8, 8, 0, 1.0)


def reference_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, thr: float) -> list[int]:
    keep: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(classes[j] != classes[i] or box_iou_matrix(boxes[[i, j]])[0, 1] <= thr for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_class_aware_nms_matches_the_textbook_greedy_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    xy = rng.uniform(0, 200, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 60, (n, 2))], axis=1).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    classes = rng.integers(0, 3, n)
    expected = reference_nms(boxes, scores, classes, 0.5)
    assert class_aware_nms(boxes, scores, classes, 0.5, 1000).tolist() == expected
    assert class_aware_nms(boxes, scores, classes, 0.5, 7).tolist() == expected[:7]


def test_top_k_is_deterministic_on_ties() -> None:
    values = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5])
    assert top_k(values, 3).tolist() == [1, 3, 0]
    assert top_k(values, 10).tolist() == [1, 3, 0, 2, 5, 4]
    assert top_k(values, 0).tolist() == []


@pytest.mark.parametrize(("src_h", "src_w", "resize"), [
    (720, 1280, "letterbox"), (720, 1280, "stretch"), (100, 90, "letterbox"), (1080, 607, "letterbox"),
    (96, 128, "stretch"), (61, 77, "stretch"), (360, 640, "stretch"), (97, 129, "stretch"), (200, 100, "stretch"),
])
def test_to_source_counts_the_same_as_a_full_recount(src_h: int, src_w: int, resize: str) -> None:
    from perception.models.card import InputSpec
    from perception.models.preprocess import Preprocessor

    rng = np.random.default_rng(src_h * src_w)
    geometry = Preprocessor(InputSpec(name="x", width=128, height=96, resize=resize)).geometry(src_h, src_w)
    canvas = Canvas(96, 128)
    for k in range(40):  # blobs of every size, some of a single pixel that may vanish at source size
        h, w = rng.integers(1, 30, 2)
        canvas.paste_instance(np.ones((h, w), bool), int(rng.integers(0, 128 - w)), int(rng.integers(0, 96 - h)),
                              k % 5, 1 - k / 100, overlap_threshold=0.0)
    canvas.fill_stuff(rng.integers(0, 3, (96, 128)), [0, 1, 2], min_area=1)
    fast = canvas.to_source(geometry)
    seg = canvas.segmentation()
    slow = Segmentation.from_id_map(geometry.map_to_source(seg.id_map), seg.segments.class_ids,
                                    seg.segments.scores, seg.segments.is_thing)
    assert (fast.id_map == slow.id_map).all() and fast.id_map.dtype == slow.id_map.dtype
    for name in ("ids", "class_ids", "is_thing", "scores", "bboxes", "areas"):
        assert (getattr(fast.segments, name) == getattr(slow.segments, name)).all(), name


@pytest.mark.parametrize(("channels", "dtype"), [(8, np.float32), (3, np.float16), (150, np.float32)])
def test_classes_and_confidence_equal_argmax_and_softmax(channels: int, dtype: type) -> None:
    rng = np.random.default_rng(channels)
    logits: np.ndarray = rng.normal(0, 3, (channels, 24, 40)).astype(dtype)
    logits[:, 0, :5] = 1.0  # all classes tied: argmax takes the lowest
    logits[2, 1, :5] = logits[1, 1, :5] = 9.0  # two tied winners
    classes, confidence = classes_and_confidence(logits, "logits")
    assert classes.dtype == np.int32 and confidence.dtype == np.float32
    assert np.array_equal(classes, logits.argmax(axis=0))
    wide = logits.astype(np.float64)
    softmax = np.exp(wide - wide.max(axis=0)) / np.exp(wide - wide.max(axis=0)).sum(axis=0)
    np.testing.assert_allclose(confidence, softmax.max(axis=0), rtol=1e-5)
    assert classes[0, 0] == 0 and classes[1, 0] == 1


@pytest.mark.parametrize(("where", "value"), [((3, 5, 7), np.nan), ((0, 0, 0), np.nan), ((2, 9, 1), np.inf)])
def test_non_finite_logits_that_matter_are_refused(where: tuple[int, int, int], value: float) -> None:
    logits = np.random.default_rng(1).normal(0, 2, (4, 12, 16)).astype(np.float32)
    logits[where] = value
    with pytest.raises(DecoderError, match="'logits' contains NaN or inf"):
        classes_and_confidence(logits, "logits")


def test_a_minus_infinite_losing_logit_is_a_zero_probability() -> None:
    logits = np.zeros((3, 4, 4), np.float32)
    logits[1] = 2.0
    logits[2, 0, 0] = -np.inf
    classes, confidence = classes_and_confidence(logits, "logits")
    assert (classes == 1).all()
    assert confidence[0, 0] == pytest.approx(np.exp(2) / (np.exp(2) + 1))


@pytest.mark.parametrize(("src_h", "src_w", "resize"),
                         [(96, 128, "stretch"), (720, 1280, "letterbox"), (50, 64, "stretch"), (360, 640, "stretch"),
                          (97, 129, "stretch")])
def test_grouped_pixels_track_areas_and_boxes_like_a_full_recount(src_h: int, src_w: int, resize: str) -> None:
    from perception.models.card import InputSpec
    from perception.models.preprocess import Preprocessor

    rng = np.random.default_rng(src_w)
    geometry = Preprocessor(InputSpec(name="x", width=128, height=96, resize=resize)).geometry(src_h, src_w)
    canvas = Canvas(96, 128)
    ys, xs = np.nonzero(rng.random((96, 128)) < 0.3)
    labels = rng.integers(-1, 6, len(ys))  # label 6 never used: an empty segment, dropped
    things = [(5 + k % 3, 0.9 - k / 10) for k in range(7)]
    canvas.paste_labels(ys, xs, labels, things)
    canvas.fill_stuff(rng.integers(0, 3, (96, 128)), [0, 1, 2], min_area=1)
    fast = canvas.to_source(geometry)
    slow = Segmentation.from_id_map(geometry.map_to_source(canvas.id_map),
                                    np.asarray([c for c, _ in things] + [0, 1, 2]),
                                    np.asarray([p for _, p in things] + [1.0] * 3, np.float32),
                                    np.asarray([True] * 7 + [False] * 3))
    assert len(fast.segments) == 6 + 3
    assert (fast.id_map == slow.id_map).all()
    for name in ("ids", "class_ids", "is_thing", "scores", "bboxes", "areas"):
        assert (getattr(fast.segments, name) == getattr(slow.segments, name)).all(), name


def test_small_unsure_stuff_stays_void_and_sure_or_large_stuff_stays() -> None:
    semantic = np.zeros((40, 40), np.int32)
    semantic[:5, :5] = 1  # 25 px, unsure: void
    semantic[10:15, :5] = 2  # 25 px, sure: kept
    semantic[20:, 20:] = 3  # 400 px, unsure but large: kept
    confidence = np.full((40, 40), 0.95, np.float32)
    confidence[:5, :5] = 0.6
    confidence[20:, 20:] = 0.6
    canvas = Canvas(40, 40)
    canvas.fill_stuff(semantic, [0, 1, 2, 3], min_area=10, confidence=confidence, unsure=UnsureStuff(100, 0.8))
    seg = canvas.segmentation()
    assert seg.segments.class_ids.tolist() == [0, 2, 3]
    assert (seg.id_map[:5, :5] == 0).all()
    assert seg.segments.scores.tolist() == pytest.approx([0.95, 0.95, 0.6])


@pytest.mark.parametrize("params", [{"unsure_stuff_area": -1, "unsure_stuff_confidence": 0.5},
                                    {"unsure_stuff_area": 100, "unsure_stuff_confidence": 1.5}])
def test_unsure_stuff_settings_out_of_range_are_refused(params: dict[str, float]) -> None:
    with pytest.raises(DecoderError, match="unsure_stuff_area"):
        UnsureStuff.from_params(params, "card")
    assert UnsureStuff.from_params({}, "card") is None
