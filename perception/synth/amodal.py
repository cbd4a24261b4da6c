"""Amodal truth of a drive's things: each object drawn alone, as if nothing hid it and the image
had no edges, so its centroid moves with the object and not with what covers or cuts it.

The id map of a frame is the *visible* truth (a car behind another is the sliver that shows).
A planner reading a track's velocity wants the object's motion, so the tracking evaluation
measures velocity against the motion of this amodal centroid, and how much of an object shows
(visible pixels / amodal pixels) tells heavily hidden objects apart. Each object is redrawn on
its own small canvas around its projected extent, supersampled so that the centroid is exact
to a few hundredths of a pixel and a difference over a twentieth of a second is a velocity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from perception.synth.camera import NEAR, Camera
from perception.synth.classes import CAR, PERSON, THING_ID_BASE
from perception.synth.render import Canvas, draw_thing
from perception.synth.scene import Drive
from perception.synth.world import Thing, World

SUPERSAMPLE = 16  # canvas pixels per image pixel along each axis, for small objects (at 4, a
# velocity over 0.05 s still moves 10% with the rasterisation of slow, small objects)
CANVAS_PIXELS = 400_000  # larger objects are drawn less supersampled: their centroids need it less
MAX_CANVAS_PIXELS = 4_000_000  # an object nearer than that is not drawn (it fills the view)
VELOCITY_STEP_S = 0.05  # half-width of the central difference that gives the velocity (a shorter one
# sees the rasterisation: an edge pixel flips, the centroid jumps)


@dataclass(frozen=True)
class Amodal:
    """One object at one time: centroid (image px, pixel centres at +0.5; may lie outside the
    image), whole projected area (image px), and image-plane velocity of the centroid (px/s)."""

    centroid: tuple[float, float]
    area: float
    velocity: tuple[float, float]


def _reach(thing: Thing) -> tuple[float, float]:
    """Horizontal radius and top (metres) that hold everything draw_thing paints for it."""
    radius = float(np.hypot(thing.length, thing.width)) / 2 + 0.1
    if thing.class_id == PERSON:
        return radius + thing.width + 0.3, thing.height  # swinging legs, bag
    if thing.class_id == CAR:
        return radius, thing.height
    return thing.width + 0.1, thing.height + thing.width * 1.2  # sign board above its pole


def _extent(thing: Thing, camera: Camera, t: float) -> tuple[float, float, float, float] | None:
    """Integer pixel bounds x0, y0, x1, y1 that hold the object, or None when part of it is
    behind the camera's near plane (the lens cuts it: no whole object to speak of)."""
    x, z = thing.at(t)
    radius, top = _reach(thing)
    corners = np.array([[x + dx, y, z + dz] for dx in (-radius, radius) for y in (0.0, top)
                        for dz in (-radius, radius)])
    cam = camera.to_camera(corners)
    if (cam[:, 2] < NEAR).any():
        return None
    pix = camera.project(cam)
    x0, y0 = np.floor(pix.min(axis=0)) - 1
    x1, y1 = np.ceil(pix.max(axis=0)) + 1
    return float(x0), float(y0), float(x1), float(y1)


def _draw_alone(thing: Thing, camera: Camera, t: float, bounds: tuple[float, float, float, float],
                k: float) -> tuple[np.ndarray, np.ndarray]:
    """Canvas pixel coordinates (xs, ys) of the object drawn alone at k canvas px per image px."""
    x0, y0, x1, y1 = bounds
    local = replace(camera, width=int(np.ceil((x1 - x0) * k)), height=int(np.ceil((y1 - y0) * k)),
                    focal=camera.focal * k, cx=(camera.cx - x0) * k, cy=(camera.cy - y0) * k)
    canvas = Canvas(local, with_image=False)
    draw_thing(canvas, thing, t)
    ys, xs = np.nonzero(canvas.ids == THING_ID_BASE + thing.instance_id)
    return xs, ys


def centroid(thing: Thing, camera: Camera, t: float) -> tuple[float, float] | None:
    """Centroid (image px) of the whole object at t, supersampled; None when it cannot be drawn whole."""
    bounds = _extent(thing, camera, t)
    if bounds is None:
        return None
    x0, y0, x1, y1 = bounds
    box = (x1 - x0) * (y1 - y0)
    if box > MAX_CANVAS_PIXELS:
        return None
    k = float(np.clip(np.sqrt(CANVAS_PIXELS / box), 1.0, SUPERSAMPLE))
    xs, ys = _draw_alone(thing, camera, t, bounds, k)
    if not len(xs):
        return None
    return float(x0 + (xs.mean() + 0.5) / k), float(y0 + (ys.mean() + 0.5) / k)


def area(thing: Thing, camera: Camera, t: float) -> int | None:
    """Pixels of the whole object at t on the image's own pixel grid (no supersampling: the
    same rasterisation as the frame's id map, so visible pixels / this is at most 1)."""
    bounds = _extent(thing, camera, t)
    if bounds is None or (bounds[2] - bounds[0]) * (bounds[3] - bounds[1]) > MAX_CANVAS_PIXELS:
        return None
    return len(_draw_alone(thing, camera, t, bounds, 1.0)[0])


class AmodalTruth:
    """Amodal objects of a world seen by a moving camera: camera(t) -> Camera (a Drive's)."""

    def __init__(self, world: World, camera: Callable[[float], Camera]) -> None:
        self._things = {th.instance_id: th for th in world.things}
        self._camera = camera

    def at(self, t: float, instance_ids: list[int]) -> dict[int, Amodal]:
        """The given objects at t; those without a whole projection are left out."""
        camera = self._camera
        now, before, after = camera(t), camera(t - VELOCITY_STEP_S), camera(t + VELOCITY_STEP_S)
        out: dict[int, Amodal] = {}
        for inst in instance_ids:
            thing = self._things.get(inst)
            if thing is None:
                continue
            here, pixels = centroid(thing, now, t), area(thing, now, t)
            a = centroid(thing, before, t - VELOCITY_STEP_S)
            b = centroid(thing, after, t + VELOCITY_STEP_S)
            if here is None or pixels is None or a is None or b is None:
                continue
            step = 2 * VELOCITY_STEP_S
            out[inst] = Amodal(here, float(pixels), ((b[0] - a[0]) / step, (b[1] - a[1]) / step))
        return out


def amodal_source(drive: Drive) -> Callable[[int, list[int]], dict[int, Amodal]]:
    """Frame index, instance ids -> the whole objects of a rendered drive at that frame."""
    truth = AmodalTruth(drive.world, drive.camera)
    return lambda index, instance_ids: truth.at(index / drive.fps, instance_ids)
