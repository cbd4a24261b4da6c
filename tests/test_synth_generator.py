"""The synthetic generator: deterministic from its seed, exact and consistent ground truth,
things that persist across frames with stable true instance ids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from perception.synth import CLASS_NAMES, THING_CLASSES, Drive, random_scene
from perception.synth.classes import MIN_THING_PIXELS, THING_ID_BASE
from perception.synth.scene import VOID_CLASS, training_sample


def test_same_seed_gives_identical_frames_and_truth() -> None:
    a, b = Drive(5, frames=6), Drive(5, frames=6)
    for i in (0, 5):
        fa, fb = a.frame(i), b.frame(i)
        assert np.array_equal(fa.bgr, fb.bgr)
        assert np.array_equal(fa.truth.id_map, fb.truth.id_map)
        assert fa.truth.segments == fb.truth.segments
    img1, truth1 = random_scene(42)
    img2, truth2 = random_scene(42)
    assert np.array_equal(img1, img2) and np.array_equal(truth1.id_map, truth2.id_map)


def test_different_seeds_give_different_worlds() -> None:
    assert not np.array_equal(Drive(1, 2).frame(0).bgr, Drive(2, 2).frame(0).bgr)
    assert not np.array_equal(random_scene(1)[0], random_scene(2)[0])


@pytest.mark.parametrize("seed", [0, 3, 17])
def test_truth_is_consistent_with_the_image(seed: int) -> None:
    bgr, truth = random_scene(seed)
    assert bgr.shape == (192, 320, 3) and bgr.dtype == np.uint8
    assert truth.id_map.shape == (192, 320)
    listed = {s.id for s in truth.segments}
    present = set(np.unique(truth.id_map).tolist()) - {0}
    assert present == listed  # every id in the map is described, no segment is empty
    for s in truth.segments:
        assert 0 <= s.class_id < len(CLASS_NAMES)
        assert s.is_thing == (s.class_id in THING_CLASSES)
        if s.is_thing:
            assert s.id == THING_ID_BASE + s.instance_id
            assert int((truth.id_map == s.id).sum()) >= MIN_THING_PIXELS
        else:
            assert s.instance_id == 0
    # stuff classes all appear in a street scene; at least one thing too
    classes = {s.class_id for s in truth.segments}
    assert {0, 2, 3} <= classes and classes & THING_CLASSES


def test_other_frame_sizes_render() -> None:
    frame = Drive(4, frames=1, width=640, height=360).frame(0)
    assert frame.bgr.shape == (360, 640, 3) and frame.truth.id_map.shape == (360, 640)


def test_things_persist_with_stable_ids_and_move_smoothly() -> None:
    drive = Drive(9, frames=12, fps=10.0)
    frames = list(drive)
    seen_in_several = 0
    for prev, cur in itertools.pairwise(frames):
        prev_things = {s.id: s for s in prev.truth.segments if s.is_thing}
        cur_things = {s.id: s for s in cur.truth.segments if s.is_thing}
        for seg_id in prev_things.keys() & cur_things.keys():
            assert prev_things[seg_id].class_id == cur_things[seg_id].class_id
            assert prev_things[seg_id].instance_id == cur_things[seg_id].instance_id
            a = np.argwhere(prev.truth.id_map == seg_id).mean(axis=0)
            b = np.argwhere(cur.truth.id_map == seg_id).mean(axis=0)
            # 0.1 s apart: a thing's centroid moves a little, never across the picture
            assert np.abs(a - b).max() < 40, (seg_id, a, b)
            seen_in_several += 1
    assert seen_in_several > 20


def test_drive_stamps_are_seed_independent() -> None:
    assert Drive(1, 5, fps=10.0).stamp_ns(3) == Drive(2, 5, fps=10.0).stamp_ns(3)
    d = Drive(1, 5, fps=4.0)
    assert d.stamp_ns(2) - d.stamp_ns(1) == 250_000_000


def test_training_sample_matches_scene_truth() -> None:
    rgb, semantic, instances = training_sample(1_000_005)  # an independent-scene seed
    bgr, truth = random_scene(1_000_005)
    assert np.array_equal(rgb, bgr[:, :, ::-1])
    assert np.array_equal(semantic, truth.semantic())
    thing_pixels = np.isin(semantic, list(THING_CLASSES))
    assert np.array_equal(instances > 0, thing_pixels)
    assert np.array_equal(semantic == VOID_CLASS, truth.id_map == 0)
