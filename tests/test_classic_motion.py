"""The motion method: background model, shadows, splitting touching blobs, class rules, moving camera."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.core.errors import FrameError
from perception.evaluation.runner import evaluate_scenes
from perception.models.classic.base import CameraMovingError
from perception.synth.classes import CLASS_NAMES
from perception.synth.static_scene import StaticScene
from tests.classic_support import background, card_with, noisy, pipeline_for, things

WARMUP = 5
PERSON, CAR = 2, 3  # class ids in engines/classic-motion.toml


def _scene(shapes, frames: int, seed: int = 0):
    """Frames of a still background with shapes drawn by shapes(frame_index, image)."""
    rng = np.random.default_rng(seed)
    still = background()
    for i in range(frames):
        image = noisy(still, rng)
        shapes(i, image)
        yield image


def _run(card, frames):
    pipeline = pipeline_for(card)
    return [pipeline.process(f) for f in frames]


def _box(i: int, image: np.ndarray) -> None:
    # 12 px a frame: during a 9-frame warm-up no pixel is covered in most frames
    cv2.rectangle(image, (10 + 12 * i, 60), (50 + 12 * i, 90), (250, 250, 250), -1)


def test_moving_box_is_one_thing_after_warm_up_and_the_rest_static_background() -> None:
    segs = _run(card_with("classic-motion", warmup_frames=9), _scene(_box, 18))
    assert all(things(s) == [] for s in segs[:9])  # learning: nothing published as moving
    for i, seg in enumerate(segs[9:], start=9):
        found = things(seg)
        assert len(found) == 1
        cls, (x0, y0, x1, _) = found[0]
        assert cls == CAR  # wider than tall
        assert abs(x0 - (10 + 12 * i)) <= 2 and abs(x1 - (51 + 12 * i)) <= 2 and abs(y0 - 60) <= 2
        stuff = [c for c, t in zip(seg.segments.class_ids, seg.segments.is_thing, strict=True) if not t]
        assert stuff == [0]  # static background covers the rest
        assert int(seg.segments.areas.sum()) == 320 * 180


def test_objects_in_the_first_frames_leave_no_ghost() -> None:
    """A person standing in frame 0 who then walks away: the median warm-up never learns them."""
    def walker(i: int, image: np.ndarray) -> None:
        x = 40 + (0 if i < 3 else 12 * i)  # stands still for 3 frames, then walks
        cv2.rectangle(image, (x, 50), (x + 12, 110), (20, 20, 20), -1)

    segs = _run(card_with("classic-motion", warmup_frames=9), _scene(walker, 16))
    for seg in segs[9:]:
        assert len(things(seg)) == 1  # the walker, not also where they stood at the start
        assert things(seg)[0][0] == PERSON


def test_touching_blobs_are_split_by_watershed_and_kept_whole_without_it() -> None:
    def pair(i: int, image: np.ndarray) -> None:
        if i >= WARMUP:
            cv2.circle(image, (100 + 2 * i, 90), 22, (240, 240, 240), -1)
            cv2.circle(image, (146 + 2 * i, 90), 22, (240, 240, 240), -1)  # just touching

    split = _run(card_with("classic-motion", warmup_frames=WARMUP), _scene(pair, 10))
    whole = _run(card_with("classic-motion", warmup_frames=WARMUP, split_touching=False), _scene(pair, 10))
    for a, b in zip(split[WARMUP:], whole[WARMUP:], strict=True):
        assert len(things(a)) == 2 and len(things(b)) == 1
        left, right = sorted(box for _, box in things(a))
        assert left[2] <= right[0] + 2  # side by side, meeting near the middle


def test_size_and_aspect_rules_pick_the_class_and_the_default_catches_the_rest() -> None:
    def shapes(i: int, image: np.ndarray) -> None:
        if i >= WARMUP:
            cv2.rectangle(image, (30, 40), (45, 100), (10, 10, 10), -1)  # tall: person
            cv2.rectangle(image, (150, 60), (230, 95), (250, 250, 250), -1)  # wide: car

    card = card_with("classic-motion", warmup_frames=WARMUP)
    seg = _run(card, _scene(shapes, WARMUP + 1))[-1]
    assert sorted(c for c, _ in things(seg)) == [PERSON, CAR]
    no_rules = card_with("classic-motion", warmup_frames=WARMUP, rules=[])
    seg = _run(no_rules, _scene(shapes, WARMUP + 1))[-1]
    assert [c for c, _ in things(seg)] == [1, 1]  # "moving"


def test_shadows_are_background_unless_shadow_detection_is_off() -> None:
    still = background()

    def frames():
        rng = np.random.default_rng(1)
        for i in range(WARMUP + 3):
            image = noisy(still, rng).astype(np.float32)
            if i >= WARMUP:
                image[60:120, 100:200] *= 0.7  # same colour, darker: a cast shadow
            yield image.astype(np.uint8)

    with_shadows = _run(card_with("classic-motion", warmup_frames=WARMUP), frames())
    without = _run(card_with("classic-motion", warmup_frames=WARMUP, detect_shadows=False), frames())
    assert all(things(s) == [] for s in with_shadows)
    assert all(len(things(s)) == 1 for s in without[WARMUP:])


def test_a_moving_camera_is_refused_per_frame_then_the_background_is_relearnt() -> None:
    still = background()
    rng = np.random.default_rng(2)
    pipeline = pipeline_for(card_with("classic-motion", warmup_frames=WARMUP))
    for _ in range(WARMUP + 1):
        assert things(pipeline.process(noisy(still, rng))) == []
    panned = np.roll(still, 37, axis=1)
    with pytest.raises(CameraMovingError, match="the camera is moving") as caught:
        pipeline.process(noisy(panned, rng))
    assert isinstance(caught.value, FrameError) and caught.value.exit_code == 2
    # the new view is learnt like the first: warm-up, then quiet
    segs = [pipeline.process(noisy(panned, rng)) for _ in range(WARMUP + 3)]
    assert all(things(s) == [] for s in segs)


def test_knn_background_model_finds_the_moving_box_too() -> None:
    segs = _run(card_with("classic-motion", warmup_frames=9, model="knn"), _scene(_box, 14))
    assert all(len(things(s)) == 1 for s in segs[9:])


def test_reset_forgets_the_background_for_a_new_scene() -> None:
    pipeline = pipeline_for(card_with("classic-motion", warmup_frames=WARMUP))
    rng = np.random.default_rng(3)
    first, second = background(seed=1), background(seed=2)
    for _ in range(WARMUP + 1):
        pipeline.process(noisy(first, rng))
    pipeline.reset()
    segs = [pipeline.process(noisy(second, rng)) for _ in range(WARMUP + 2)]
    assert all(things(s) == [] for s in segs)  # no "whole new scene" blob, no camera-moving refusal


def test_static_synthetic_scene_things_are_found() -> None:
    """A short static-camera scene through the default card: most moving things matched (IoU > 0.5)."""
    card = card_with("classic-motion")
    pipeline = pipeline_for(card)
    scene = [(f.bgr, f.truth) for f in StaticScene(31, 40)]
    report = evaluate_scenes(card, pipeline.process, [scene], reset=pipeline.reset, unscored=20,
                             truth_names=CLASS_NAMES).to_dict()
    assert report["things"]["rq"] > 50
    assert report["things"]["sq"] > 75
