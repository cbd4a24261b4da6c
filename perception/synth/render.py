"""Draw a World through a Camera at time t: a clean colour image plus the exact id map.

Painter's algorithm: sky, ground, buildings, then trees and things far to near, so nearer
geometry overwrites farther geometry in both the picture and the id map (occlusion is exact).
Photometric damage (blur, noise, JPEG...) is applied afterwards in effects.py.
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.synth.camera import Camera
from perception.synth.classes import (
    BUILDING,
    CAR,
    PERSON,
    ROAD,
    SIDEWALK,
    SKY,
    THING_ID_BASE,
    VEGETATION,
    stuff_segment_id,
)
from perception.synth.world import Building, Thing, Tree, World

FAR = 160.0  # metres; the ground is drawn to the horizon, objects only up to here
_SHIFT = 4  # fillPoly sub-pixel bits
Color = tuple[float, float, float]


class Canvas:
    """A colour image and an id map drawn together; detail strokes may leave the id map alone."""

    def __init__(self, camera: Camera, with_image: bool = True) -> None:
        """with_image False: the id map only (an object drawn alone for its amodal truth)."""
        self.camera = camera
        self.image = np.zeros((camera.height, camera.width, 3) if with_image else (0, 0, 3), np.float32)
        self.ids = np.zeros((camera.height, camera.width), np.int32)

    def fill(self, pixels: np.ndarray | None, color: Color, seg_id: int | None) -> None:
        if pixels is None or len(pixels) < 3 or not np.isfinite(pixels).all():
            return
        pts = [np.round(np.clip(pixels, -4e4, 4e4) * (1 << _SHIFT)).astype(np.int32)]
        if self.image.size:
            cv2.fillPoly(self.image, pts, color, cv2.LINE_8, _SHIFT)
        if seg_id is not None:
            cv2.fillPoly(self.ids, pts, seg_id, cv2.LINE_8, _SHIFT)

    def world_poly(self, points: np.ndarray, color: Color, seg_id: int | None) -> None:
        self.fill(self.camera.polygon(points), color, seg_id)

    def ellipse(self, center: np.ndarray, axes: tuple[float, float], color: Color, seg_id: int | None) -> None:
        c = (round(center[0] * 16), round(center[1] * 16))
        ax = (max(1, round(axes[0] * 16)), max(1, round(axes[1] * 16)))
        if self.image.size:
            cv2.ellipse(self.image, c, ax, 0, 0, 360, color, -1, cv2.LINE_8, _SHIFT)
        if seg_id is not None:
            cv2.ellipse(self.ids, c, ax, 0, 0, 360, seg_id, -1, cv2.LINE_8, _SHIFT)


def shade(color: tuple[int, int, int] | Color, k: float) -> Color:
    return (min(255.0, color[0] * k), min(255.0, color[1] * k), min(255.0, color[2] * k))


def render(world: World, camera: Camera, t: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clean float32 BGR image (0..255) and int32 id map of the world at time t."""
    canvas = Canvas(camera)
    _sky(canvas, world)
    z_cam = camera.position[2]
    _ground(canvas, world, z_cam)
    for b in sorted(world.buildings, key=lambda b: -b.z0):
        if b.z1 > z_cam - 5 and b.z0 < z_cam + FAR:
            _building(canvas, b)
    items: list[tuple[float, Tree | Thing]] = []
    for tree in world.trees:
        if z_cam - 2 < tree.z < z_cam + FAR:
            items.append((tree.z, tree))
    for thing in world.things:
        x, z = thing.at(t)
        if z_cam - 6 < z < z_cam + FAR:
            items.append((z, thing))
    for thing in world.things:  # soft shadows on the ground under things, before any of them is drawn
        if thing.class_id == CAR:
            x, z = thing.at(t)
            if z_cam < z < z_cam + 60:
                _shadow(canvas, thing, x, z)
    for _, item in sorted(items, key=lambda p: -p[0]):
        if isinstance(item, Tree):
            _tree(canvas, item, rng)
        else:
            draw_thing(canvas, item, t)
    return canvas.image, canvas.ids


def draw_thing(canvas: Canvas, thing: Thing, t: float) -> None:
    """One car, person or sign at time t, over whatever the canvas holds."""
    if thing.class_id == CAR:
        _car(canvas, thing, t)
    elif thing.class_id == PERSON:
        _person(canvas, thing, t)
    else:
        _sign(canvas, thing)


def _sky(canvas: Canvas, world: World) -> None:
    h = canvas.camera.height
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    top, bottom = np.array(world.sky_top, np.float32), np.array(world.sky_bottom, np.float32)
    canvas.image[:] = top * (1 - ramp) + bottom * ramp
    canvas.ids[:] = stuff_segment_id(SKY)


def _ground(canvas: Canvas, world: World, z_cam: float) -> None:
    grass = stuff_segment_id(VEGETATION)
    far = z_cam + 4000.0
    # distant tree line hides the horizon seam and gives vegetation a far-field look
    h = world.treeline_height
    xs = np.linspace(-3000, 3000, 40)
    tops = h * (0.6 + 0.4 * np.cos(xs * 0.01 + world.seed % 7)) * 25
    line = np.concatenate([np.stack([xs, tops, np.full_like(xs, far)], 1),
                           np.array([[3000, -50, far], [-3000, -50, far]])])
    canvas.world_poly(line, shade(world.grass_color, 0.7), grass)
    canvas.world_poly(np.array([[-4000, 0, z_cam], [4000, 0, z_cam], [4000, 0, far], [-4000, 0, far]]),
                      world.grass_color, grass)
    near, far_obj = z_cam + 0.2, z_cam + 1500.0
    rh = world.road_half
    for side, walk in ((-1, world.sidewalk[0]), (1, world.sidewalk[1])):
        if walk > 0:
            x0, x1 = side * rh, side * (rh + walk)
            canvas.world_poly(np.array([[x0, 0, near], [x1, 0, near], [x1, 0, far_obj], [x0, 0, far_obj]]),
                              world.sidewalk_color, stuff_segment_id(SIDEWALK))
            kerb = side * (rh + 0.15)
            canvas.world_poly(np.array([[x0, 0, near], [kerb, 0, near], [kerb, 0, far_obj], [x0, 0, far_obj]]),
                              shade(world.sidewalk_color, 1.15), stuff_segment_id(SIDEWALK))
    canvas.world_poly(np.array([[-rh, 0, near], [rh, 0, near], [rh, 0, far_obj], [-rh, 0, far_obj]]),
                      world.road_color, stuff_segment_id(ROAD))
    paint = (210.0, 215.0, 220.0)
    for i in range(1, world.lanes):
        x = -rh + i * world.lane_width
        solid = world.lanes % 2 == 0 and i == world.lanes // 2
        start = np.floor(z_cam / 9.0) * 9.0
        for z in np.arange(start, z_cam + 90, 9.0):
            z1 = z + (9.0 if solid else 3.0)
            canvas.world_poly(np.array([[x - 0.07, 0, z], [x + 0.07, 0, z], [x + 0.07, 0, z1], [x - 0.07, 0, z1]]),
                              paint, None)
    for zc in world.crosswalks:
        if z_cam < zc < z_cam + 90:
            for x in np.arange(-rh + 0.3, rh - 0.3, 1.0):
                canvas.world_poly(np.array([[x, 0, zc], [x + 0.5, 0, zc], [x + 0.5, 0, zc + 3], [x, 0, zc + 3]]),
                                  paint, None)


def _building(canvas: Canvas, b: Building) -> None:
    seg = stuff_segment_id(BUILDING)
    x0 = b.side * b.x_facade
    x1 = b.side * (b.x_facade + b.depth)
    canvas.world_poly(np.array([[x0, 0, b.z0], [x1, 0, b.z0], [x1, b.height, b.z0], [x0, b.height, b.z0]]),
                      shade(b.color, 0.75), seg)
    canvas.world_poly(np.array([[x0, 0, b.z0], [x0, 0, b.z1], [x0, b.height, b.z1], [x0, b.height, b.z0]]),
                      b.color, seg)
    cam_z = canvas.camera.position[2]
    if b.z1 < cam_z or b.z0 > cam_z + 70:
        return
    # window grid on the facade: one projection for all windows of the building
    floors = np.arange(1.0, b.height - 1.0, b.floor_h)
    cols = np.arange(b.z0 + 0.8, b.z1 - 1.2, b.window_pitch)
    cols = cols[(cols > cam_z + 1.0)]
    if not len(floors) or not len(cols):
        return
    fy, cz = np.meshgrid(floors, cols, indexing="ij")
    fy, cz = fy.ravel(), cz.ravel()
    wz = b.window_pitch * 0.55
    corners = np.stack([
        np.stack([np.full_like(fy, x0), fy, cz], 1), np.stack([np.full_like(fy, x0), fy, cz + wz], 1),
        np.stack([np.full_like(fy, x0), fy + 1.4, cz + wz], 1), np.stack([np.full_like(fy, x0), fy + 1.4, cz], 1),
    ], 1)
    cam = canvas.camera.to_camera(corners.reshape(-1, 3)).reshape(-1, 4, 3)
    ok = (cam[:, :, 2] > 0.5).all(axis=1)
    pix = canvas.camera.project(cam[ok].reshape(-1, 3)).reshape(-1, 4, 2)
    pts = [np.round(p * (1 << _SHIFT)).astype(np.int32) for p in pix]
    if pts:
        cv2.fillPoly(canvas.image, pts, b.window_color, cv2.LINE_8, _SHIFT)


def _tree(canvas: Canvas, tree: Tree, rng: np.random.Generator) -> None:
    seg = stuff_segment_id(VEGETATION)
    cam = canvas.camera
    base = cam.to_camera(np.array([[tree.x, 0.0, tree.z], [tree.x, tree.trunk_h + tree.crown_r, tree.z]]))
    if base[0, 2] < 1.0:
        return
    w = 0.15
    canvas.world_poly(np.array([[tree.x - w, 0, tree.z], [tree.x + w, 0, tree.z],
                                [tree.x + w, tree.trunk_h + 0.5, tree.z], [tree.x - w, tree.trunk_h + 0.5, tree.z]]),
                      (40.0, 60.0, 80.0), seg)
    centre = cam.project(base[1:2])[0]
    r = cam.focal * tree.crown_r / base[1, 2]
    canvas.ellipse(centre, (r, r * 1.1), tree.color, seg)
    # a few darker/lighter lobes make the crown less of a disc
    for k in range(3):
        dx, dy = np.cos(k * 2.1 + tree.z) * r * 0.5, np.sin(k * 2.1 + tree.z) * r * 0.4
        canvas.ellipse(centre + np.array([dx, dy]), (r * 0.6, r * 0.55), shade(tree.color, 0.75 + 0.2 * k), seg)


def _box_faces(cx: float, cz: float, yaw: float, length: float, width: float,
               y0: float, y1: float, zoff: float = 0.0) -> list[tuple[np.ndarray, float]]:
    """Faces of a yawed box as (world corners, brightness), end faces darker than sides, top brighter."""
    c, s = np.cos(yaw), np.sin(yaw)
    hl, hw = length / 2, width / 2
    local = np.array([[-hw, -hl + zoff], [hw, -hl + zoff], [hw, hl + zoff], [-hw, hl + zoff]])
    xz = np.stack([cx + local[:, 0] * c + local[:, 1] * s, cz - local[:, 0] * s + local[:, 1] * c], 1)
    lo = np.column_stack([xz[:, 0], np.full(4, y0), xz[:, 1]])
    hi = np.column_stack([xz[:, 0], np.full(4, y1), xz[:, 1]])
    faces = [(np.array([lo[i], lo[(i + 1) % 4], hi[(i + 1) % 4], hi[i]]), 0.85 if i % 2 == 0 else 0.7)
             for i in range(4)]
    faces.append((hi, 1.1))
    return faces


def _draw_box(canvas: Canvas, faces: list[tuple[np.ndarray, float]], color: Color, seg: int | None) -> None:
    pos = np.asarray(canvas.camera.position)
    centre = np.mean([f.mean(axis=0) for f, _ in faces[:4]], axis=0)
    for corners, k in faces:
        mid = corners.mean(axis=0)
        if np.dot(mid - centre, pos - mid) > 0:  # face turned towards the camera
            canvas.world_poly(corners, shade(color, k), seg)


def _shadow(canvas: Canvas, car: Thing, x: float, z: float) -> None:
    c, s = np.cos(car.yaw), np.sin(car.yaw)
    hl, hw = car.length / 2 + 0.3, car.width / 2 + 0.2
    local = np.array([[-hw, -hl], [hw, -hl], [hw, hl], [-hw, hl]])
    pts = np.column_stack([x + local[:, 0] * c + local[:, 1] * s, np.zeros(4), z - local[:, 0] * s + local[:, 1] * c])
    pix = canvas.camera.polygon(pts)
    if pix is not None:
        mask = np.zeros(canvas.ids.shape, np.uint8)
        cv2.fillPoly(mask, [np.round(pix * 16).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
        canvas.image[mask.astype(bool)] *= 0.45


def _car(canvas: Canvas, car: Thing, t: float) -> None:
    seg = THING_ID_BASE + car.instance_id
    x, z = car.at(t)
    h = car.height
    dark = (25.0, 25.0, 28.0)
    _draw_box(canvas, _box_faces(x, z, car.yaw, car.length * 0.82, car.width * 0.92, 0.0, 0.38), dark, seg)
    body_top = 0.55 * h if car.variant < 2 else 0.5 * h
    _draw_box(canvas, _box_faces(x, z, car.yaw, car.length, car.width, 0.22, body_top), car.color, seg)
    if car.variant == 2:  # van: one tall box, windows painted on
        _draw_box(canvas, _box_faces(x, z, car.yaw, car.length * 0.95, car.width * 0.98, body_top, h,
                                     0.05 * car.length), car.color, seg)
        _draw_box(canvas, _box_faces(x, z, car.yaw, car.length * 0.96, car.width * 0.99, h * 0.62, h * 0.85,
                                     0.05 * car.length), (60.0, 50.0, 45.0), None)
    else:
        cabin_len = car.length * (0.5 if car.variant == 0 else 0.45)
        _draw_box(canvas, _box_faces(x, z, car.yaw, cabin_len, car.width * 0.86, body_top, h,
                                     -0.08 * car.length), (70.0, 60.0, 55.0), seg)
    # the end facing a camera behind it is z - length/2 for both directions: rear lights red,
    # headlights of oncoming cars (yaw ~ pi) pale
    front = np.cos(car.yaw) < 0
    zend = z - car.length / 2
    light = (200.0, 230.0, 240.0) if front else (30.0, 30.0, 200.0)
    for sx in (-1, 1):
        lx = x + sx * car.width * 0.38
        y0, y1, zl = body_top - 0.2, body_top - 0.05, zend - 0.01
        quad = np.array([[lx - 0.12, y0, zl], [lx + 0.12, y0, zl], [lx + 0.12, y1, zl], [lx - 0.12, y1, zl]])
        canvas.world_poly(quad, light, None)


def _person(canvas: Canvas, p: Thing, t: float) -> None:
    seg = THING_ID_BASE + p.instance_id
    x, z = p.at(t)
    h, w = p.height, p.width
    speed = abs(p.vx) + abs(p.vz)
    swing = 0.25 * np.sin(t * 6.0 * speed + p.instance_id) if speed > 0 else 0.05
    legs = p.color2
    skin = (90.0 + p.variant * 20, 120.0 + p.variant * 15, 170.0 + p.variant * 10)

    def quad(x0: float, x1: float, y0: float, y1: float, lean: float = 0.0) -> np.ndarray:
        return np.array([[x + x0 + lean, y0, z], [x + x1 + lean, y0, z], [x + x1, y1, z], [x + x0, y1, z]])

    hip = 0.5 * h
    canvas.world_poly(quad(-w * 0.3, -w * 0.05, 0.0, hip, swing * h * 0.4), legs, seg)
    canvas.world_poly(quad(w * 0.05, w * 0.3, 0.0, hip, -swing * h * 0.4), shade(legs, 0.85), seg)
    shoulder = 0.82 * h
    torso = np.array([[x - w * 0.35, hip - 0.05, z], [x + w * 0.35, hip - 0.05, z],
                      [x + w * 0.5, shoulder, z], [x - w * 0.5, shoulder, z]])
    canvas.world_poly(torso, p.color, seg)
    for sx in (-1, 1):  # arms swing opposite to the legs
        ax = x + sx * w * 0.5
        canvas.world_poly(np.array([[ax - 0.05, shoulder, z], [ax + 0.05, shoulder, z],
                                    [ax + 0.05 - sx * swing * 0.3, hip * 0.95, z],
                                    [ax - 0.05 - sx * swing * 0.3, hip * 0.95, z]]), shade(p.color, 0.8), seg)
    cam = canvas.camera
    head = cam.to_camera(np.array([[x, 0.91 * h, z]]))
    if head[0, 2] > 0.5:
        r = cam.focal * 0.11 * h / head[0, 2]
        canvas.ellipse(cam.project(head)[0], (r * 0.85, r), skin, seg)
    if p.variant == 3:  # a bag or backpack widens the silhouette on one side
        canvas.world_poly(quad(w * 0.45, w * 0.75, hip * 1.05, shoulder * 0.95), shade(p.color2, 0.6), seg)


def _sign(canvas: Canvas, s: Thing) -> None:
    seg = THING_ID_BASE + s.instance_id
    x, z = s.x, s.z
    canvas.world_poly(np.array([[x - 0.04, 0, z], [x + 0.04, 0, z], [x + 0.04, s.height, z], [x - 0.04, s.height, z]]),
                      (120.0, 120.0, 125.0), seg)
    r = s.width / 2
    cy = s.height + r * 0.9
    n = (32, 3, 3, 4, 4, 8, 4)[s.variant]
    rot = (0.0, np.pi / 2, -np.pi / 2, np.pi / 4, 0.0, np.pi / 8, np.pi / 4)[s.variant]
    ang = rot + np.arange(n) * 2 * np.pi / n
    rx = r * (1.6 if s.variant == 6 else 1.0)
    outer = np.column_stack([x + rx * np.cos(ang) * 1.0, cy + r * np.sin(ang), np.full(n, z - 0.02)])
    if s.variant == 6:  # wide rectangle: direction/info board
        outer = np.array([[x - rx, cy - r * 0.7, z - 0.02], [x + rx, cy - r * 0.7, z - 0.02],
                          [x + rx, cy + r * 0.7, z - 0.02], [x - rx, cy + r * 0.7, z - 0.02]])
    canvas.world_poly(outer, s.color, seg)
    inner = outer.copy()
    inner[:, 0] = x + (outer[:, 0] - x) * 0.7
    inner[:, 1] = cy + (outer[:, 1] - cy) * 0.7
    inner[:, 2] = z - 0.03
    canvas.world_poly(inner, s.color2, None)
