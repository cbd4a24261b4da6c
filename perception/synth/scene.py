"""Frames with exact ground truth: forward-camera drives and independent training scenes.

`Drive(seed, ...)` renders a temporally coherent drive (camera moving along the road,
objects moving, stable true instance ids). `random_scene(seed)` renders one unrelated
scene per seed with wider variation, for training data where coherence is not needed.
Both are deterministic functions of their seed and size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import cv2
import numpy as np

from perception.synth.camera import Camera
from perception.synth.classes import MIN_THING_PIXELS, NUM_CLASSES, THING_ID_BASE
from perception.synth.effects import Look, apply_look, noise_field, random_look
from perception.synth.render import FAR, render
from perception.synth.world import World, build_world

# Bump when a change alters rendered pixels or truth: it keys the drive cache.
GENERATOR_VERSION = 1
DEFAULT_WIDTH, DEFAULT_HEIGHT = 320, 192
VOID_CLASS = 255
# Training scenes use seeds from here up; evaluation drives must use seeds below it.
TRAIN_SEED_BASE = 1_000_000
# Drive frame i is stamped START_NS + i * 1e9 / fps whatever the seed (2023-11-14T22:13:20Z).
START_NS = 1_700_000_000_000_000_000


@dataclass(frozen=True)
class TruthSegment:
    id: int
    class_id: int
    instance_id: int  # stable across a drive's frames for things; 0 for stuff
    is_thing: bool


@dataclass(frozen=True)
class SceneTruth:
    """Panoptic ground truth: id map (uint32, 0 = void) and the segments it holds."""

    id_map: np.ndarray
    segments: tuple[TruthSegment, ...]

    def semantic(self) -> np.ndarray:
        """Per-pixel class id, VOID_CLASS (255) where void."""
        lut = np.full(int(self.id_map.max(initial=0)) + 1, VOID_CLASS, np.uint8)
        for s in self.segments:
            lut[s.id] = s.class_id
        return lut[self.id_map]

    def instances(self) -> np.ndarray:
        """Per-pixel instance id for thing pixels (0 elsewhere), uint16 in 1..number of things."""
        lut = np.zeros(int(self.id_map.max(initial=0)) + 1, np.uint16)
        for k, s in enumerate((s for s in self.segments if s.is_thing), start=1):
            lut[s.id] = k
        return lut[self.id_map]


@dataclass(frozen=True)
class SynthFrame:
    index: int
    t: float  # seconds since the drive started
    bgr: np.ndarray
    truth: SceneTruth


def truth_from_ids(ids: np.ndarray, thing_class: dict[int, int]) -> tuple[SceneTruth, np.ndarray]:
    """Render id map -> ground truth (tiny things made void) and the per-pixel class for texturing."""
    values, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(ids.shape)
    keep = np.ones(len(values), bool)
    segments: list[TruthSegment] = []
    classes = np.zeros(len(values), np.uint8)
    for k, (value, count) in enumerate(zip(values.tolist(), counts.tolist(), strict=True)):
        if value >= THING_ID_BASE:
            class_id = thing_class[value]
            classes[k] = class_id
            if count < MIN_THING_PIXELS:
                keep[k] = False
                continue
            segments.append(TruthSegment(value, class_id, value - THING_ID_BASE, True))
        else:
            classes[k] = value - 1
            segments.append(TruthSegment(value, value - 1, 0, False))
    remap = np.where(keep, values, 0).astype(np.uint32)
    return SceneTruth(remap[inverse], tuple(segments)), classes[inverse]


def _render_frame(world: World, camera: Camera, t: float, look: Look, rng: np.random.Generator,
                  ) -> tuple[np.ndarray, SceneTruth]:
    image, ids = render(world, camera, t, rng)
    truth, semantic = truth_from_ids(ids, world.thing_classes)
    h, w = ids.shape
    textures = (noise_field(rng, h, w, (max(2, h // 24), max(2, w // 24))),
                noise_field(rng, h, w, (max(2, h // 3), max(2, w // 3))))
    bgr = apply_look(image, semantic.astype(np.int32) % NUM_CLASSES, look, rng, textures)
    return bgr, truth


class FrameSequence:
    """Frame i of `frames`, at t = i / fps, stamped START_NS + i / fps; subclasses render frame(i)."""

    frames: int
    fps: float

    def frame(self, index: int) -> SynthFrame:
        raise NotImplementedError

    def stamp_ns(self, index: int) -> int:
        return START_NS + round(index * 1e9 / self.fps)

    def __iter__(self) -> Iterator[SynthFrame]:
        for i in range(self.frames):
            yield self.frame(i)

    def __len__(self) -> int:
        return self.frames


class Drive(FrameSequence):
    """A forward camera driving along one world; frame i is at t = i / fps."""

    def __init__(self, seed: int, frames: int, fps: float = 10.0,
                 width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT) -> None:
        self.seed, self.frames, self.fps, self.width, self.height = seed, frames, fps, width, height
        rng = np.random.default_rng([seed, 1])
        self.speed = float(rng.uniform(4.0, 12.0))
        self.cam_h = float(rng.uniform(1.2, 1.7))
        self.focal = float(width * rng.uniform(0.8, 1.1))
        self.cy = float(height * rng.uniform(0.42, 0.52))
        self.look = random_look(rng)
        self.sway = (float(rng.uniform(0, 0.4)), float(rng.uniform(0.05, 0.3)), float(rng.uniform(0, 6.28)))
        duration = frames / fps
        world_rng = np.random.default_rng([seed, 2])
        lanes_probe = build_world(seed, 0.0, 1.0)  # ego lane depends on the lane layout of this seed
        ego_lane = int(world_rng.integers(lanes_probe.lanes // 2, lanes_probe.lanes))
        self.cam_x = -lanes_probe.road_half + lanes_probe.lane_width * (ego_lane + 0.5)
        self.world = build_world(seed, -20.0, self.speed * duration + FAR + 20.0,
                                 density=float(world_rng.uniform(0.7, 1.6)), ego_x=self.cam_x, ego_speed=self.speed)

    def camera(self, t: float) -> Camera:
        amp, freq, phase = self.sway
        return Camera(self.width, self.height, self.focal, self.width / 2, self.cy,
                      (self.cam_x + amp * np.sin(freq * t + phase), self.cam_h + 0.02 * np.sin(7.0 * t),
                       self.speed * t),
                      yaw=0.02 * np.sin(freq * t), pitch=0.01 * np.sin(5.0 * t + phase), roll=0.01 * np.sin(3.0 * t))

    def frame(self, index: int) -> SynthFrame:
        t = index / self.fps
        rng = np.random.default_rng([self.seed, 3, index])
        bgr, truth = _render_frame(self.world, self.camera(t), t, self.look, rng)
        return SynthFrame(index, t, bgr, truth)


def random_scene(seed: int, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT) -> tuple[np.ndarray, SceneTruth]:
    """One independent scene: random street, camera pose, crowd density and look."""
    rng = np.random.default_rng([seed, 7])
    world = build_world(seed, -15.0, FAR + 30.0, density=float(rng.uniform(0.5, 2.5)),
                        ego_x=0.0, ego_speed=0.0)
    lane = int(rng.integers(world.lanes))
    cam_x = -world.road_half + world.lane_width * (lane + rng.uniform(0.2, 0.8))
    camera = Camera(width, height, float(width * rng.uniform(0.7, 1.2)), width / 2 + rng.normal(0, 4),
                    float(height * rng.uniform(0.35, 0.6)),
                    (float(cam_x), float(rng.uniform(1.1, 2.0)), float(rng.uniform(-5, 40))),
                    yaw=float(rng.normal(0, 0.08)), pitch=float(rng.normal(0, 0.03)),
                    roll=float(rng.normal(0, 0.04)))
    t = float(rng.uniform(0, 30))
    cam_z = camera.position[2]
    # a camera inside or touching a car sees nothing sensible: drop things that close
    clear = tuple(th for th in world.things
                  if not (abs(th.at(t)[0] - cam_x) < 1.6
                          and -th.length / 2 - 1 < th.at(t)[1] - cam_z < th.length / 2 + 3))
    world = replace(world, things=clear)
    bgr, truth = _render_frame(world, camera, t, random_look(rng), rng)
    return bgr, truth


# Out of 10 training seeds, this many come from short drives (what evaluation sees), the rest
# from independent scenes with wider variation.
DRIVE_FRACTION = 3


def single_threaded() -> None:
    """Pool-worker initializer: one OpenCV thread per process, or N workers oversubscribe N cores N-fold."""
    cv2.setNumThreads(1)


def training_sample(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed -> (RGB uint8 HxWx3, semantic uint8 HxW with 255 void, instance uint16 HxW).

    Lives here, not in perception.train, so pool workers never import torch.
    """
    if seed % 10 < DRIVE_FRACTION:
        frame = Drive(seed, frames=60, fps=10.0).frame(seed // 10 % 60)
        bgr, truth = frame.bgr, frame.truth
    else:
        bgr, truth = random_scene(seed)
    return bgr[:, :, ::-1].copy(), truth.semantic(), truth.instances()
