"""A fixed camera watching a street: the scene for background-modelling (motion) methods.

A pole-mounted camera stands beside the road, a few metres up, looking down along it; cars
drive through and people walk along the sidewalks and across. Only what moves is in the
world (parked cars, standing people and signs are left out): the ground truth's things are
exactly what a motion segmenter is asked to find. The picture keeps one texture and one tree
layout for the whole scene, so only the things and the sensor noise change between frames.
Deterministic in (seed, size); frame i is at t = i / fps. Forward drives are untouched.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from perception.synth.camera import Camera
from perception.synth.classes import NUM_CLASSES
from perception.synth.effects import apply_look, noise_field, random_look
from perception.synth.render import FAR, render
from perception.synth.scene import Drive, FrameSequence, SynthFrame, truth_from_ids
from perception.synth.world import build_world

# seconds of traffic laid out before and after the scene, so things enter and leave the view
_MARGIN_S = 40.0


class StaticScene(FrameSequence):
    """Same interface as Drive: frame(i), stamp_ns(i), iteration, len()."""

    def __init__(self, seed: int, frames: int, fps: float = 10.0, width: int = 640, height: int = 360) -> None:
        self.seed, self.frames, self.fps, self.width, self.height = seed, frames, fps, width, height
        rng = np.random.default_rng([seed, 11])
        duration = frames / fps
        span = 15.0 * (duration + 2 * _MARGIN_S)  # the fastest car's path over the scene and margins
        world = build_world(seed, -span, FAR + span, density=float(rng.uniform(0.8, 1.6)),
                            ego_x=1e6, ego_speed=0.0)  # ego far off the road: every lane moves
        moving = tuple(th for th in world.things if th.vx or th.vz)
        # things are laid out at t = 0; shift time so the scene starts mid-traffic
        self.t0 = _MARGIN_S
        side = float(rng.choice([-1.0, 1.0]))
        walk = world.sidewalk[0 if side < 0 else 1]
        cam_x = side * (world.road_half + max(walk, 1.0) * float(rng.uniform(0.3, 0.9)))
        # a tree right in front of the lens would hide the street
        trees = tuple(tr for tr in world.trees if not (abs(tr.x - cam_x) < 4.0 and -3.0 < tr.z < 25.0))
        self.world = replace(world, things=moving, trees=trees)
        self.camera = Camera(width, height, float(width * rng.uniform(0.75, 0.95)), width / 2, height / 2,
                             (cam_x, float(rng.uniform(5.0, 8.0)), 0.0),
                             yaw=float(-side * rng.uniform(0.15, 0.3)), pitch=-float(rng.uniform(0.5, 0.6)))
        self.look = replace(random_look(rng), motion_blur=0)
        textures = np.random.default_rng([seed, 12])
        self.textures = (noise_field(textures, height, width, (max(2, height // 24), max(2, width // 24))),
                         noise_field(textures, height, width, (max(2, height // 3), max(2, width // 3))))

    def frame(self, index: int) -> SynthFrame:
        t = index / self.fps
        image, ids = render(self.world, self.camera, self.t0 + t, np.random.default_rng([self.seed, 13]))
        truth, semantic = truth_from_ids(ids, self.world.thing_classes)
        noise = np.random.default_rng([self.seed, 14, index])
        bgr = apply_look(image, semantic.astype(np.int32) % NUM_CLASSES, self.look, noise, self.textures)
        return SynthFrame(index, t, bgr, truth)


CAMERAS = ("forward", "static")
# the size each camera renders at unless told: forward drives match the shipped model's input,
# static scenes the classic methods' benchmark (640x360)
DEFAULT_SIZES = {"forward": (320, 192), "static": (640, 360)}


def open_scene(camera: str, seed: int, frames: int, fps: float, width: int, height: int) -> Drive | StaticScene:
    """A forward drive or a static-camera scene (the caller checked `camera` is in CAMERAS)."""
    if camera == "static":
        return StaticScene(seed, frames, fps, width, height)
    return Drive(seed, frames, fps, width, height)
