"""Amodal truth: every object of a rendered frame drawn alone, whole, on the image's own grid."""

from __future__ import annotations

import numpy as np

from perception.synth import Drive
from perception.synth.amodal import AmodalTruth, amodal_source, centroid
from perception.synth.classes import TRAFFIC_SIGN
from perception.synth.scene import SceneTruth


def _visible(frame_truth: SceneTruth) -> dict[int, tuple[int, float, float, int]]:
    """instance id -> (visible pixels, centroid x, y, class) from the frame's id map."""
    out = {}
    for s in frame_truth.segments:
        if s.is_thing:
            ys, xs = np.nonzero(frame_truth.id_map == s.id)
            out[s.instance_id] = (len(xs), float(xs.mean()) + 0.5, float(ys.mean()) + 0.5, s.class_id)
    return out


def test_a_whole_object_is_never_smaller_than_what_shows_and_equal_when_nothing_hides_it() -> None:
    drive = Drive(11, frames=60)
    source = amodal_source(drive)
    fractions = []
    for index in (10, 50):
        frame = drive.frame(index)
        visible = _visible(frame.truth)
        whole = source(index, list(visible))
        assert whole  # the renderer can draw most of what it drew
        for inst, a in whole.items():
            assert visible[inst][0] <= a.area  # same rasterisation: the visible part is a subset
            fractions.append(visible[inst][0] / a.area)
            if visible[inst][0] == a.area >= 300 and visible[inst][3] != TRAFFIC_SIGN:
                # unhidden: the supersampled centroid is the same place (a sign's pole, under a
                # pixel wide, weighs more on the image's grid than it is: not compared)
                assert np.hypot(a.centroid[0] - visible[inst][1], a.centroid[1] - visible[inst][2]) < 1.0
    assert max(fractions) == 1.0 and min(fractions) < 0.5  # some show whole, some are mostly hidden


def test_velocity_is_the_motion_of_the_whole_objects_centroid() -> None:
    drive = Drive(12, frames=40)
    truth = AmodalTruth(drive.world, drive.camera)
    frame = drive.frame(20)
    insts = list(_visible(frame.truth))
    now = truth.at(frame.t, insts)
    things = {th.instance_id: th for th in drive.world.things}
    checked = 0
    for inst, a in now.items():
        # a slower difference of the same centroid, a frame either side
        before = centroid(things[inst], drive.camera(frame.t - 0.1), frame.t - 0.1)
        after = centroid(things[inst], drive.camera(frame.t + 0.1), frame.t + 0.1)
        if before is None or after is None or np.hypot(*a.velocity) < 20:
            continue
        slow = (np.array(after) - before) / 0.2
        assert np.hypot(*(slow - a.velocity)) < 0.2 * np.hypot(*a.velocity), inst
        checked += 1
    assert checked >= 3
