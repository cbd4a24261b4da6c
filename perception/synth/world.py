"""A deterministic street world: road, sidewalks, buildings, trees, and moving things.

Everything is laid out once from a seed along a straight road; objects move on straight
lines at constant speed, so the state at any time t is closed-form and a drive renders
the same world at successive times. Thing instance ids are fixed at creation, which gives
the drive its stable true ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from perception.synth.classes import CAR, PERSON, THING_ID_BASE, TRAFFIC_SIGN


@dataclass(frozen=True)
class Thing:
    """A car, person or sign: ground position at t=0, velocity, size and look."""

    instance_id: int
    class_id: int
    x: float
    z: float
    vx: float
    vz: float
    yaw: float  # heading about the vertical axis, 0 = along +Z
    length: float
    width: float
    height: float
    color: tuple[int, int, int]
    variant: int  # body style, clothing pattern or sign shape
    color2: tuple[int, int, int] = (0, 0, 0)

    def at(self, t: float) -> tuple[float, float]:
        return self.x + self.vx * t, self.z + self.vz * t


@dataclass(frozen=True)
class Building:
    side: int  # -1 left, +1 right
    x_facade: float  # |x| of the facade plane facing the road
    z0: float
    z1: float
    height: float
    depth: float
    color: tuple[int, int, int]
    window_color: tuple[int, int, int]
    floor_h: float
    window_pitch: float


@dataclass(frozen=True)
class Tree:
    x: float
    z: float
    trunk_h: float
    crown_r: float
    color: tuple[int, int, int]


@dataclass(frozen=True)
class World:
    seed: int
    lanes: int
    lane_width: float
    sidewalk: tuple[float, float]  # widths left, right (0 = none, grass from the kerb)
    z_end: float
    road_color: tuple[int, int, int]
    sidewalk_color: tuple[int, int, int]
    grass_color: tuple[int, int, int]
    sky_top: tuple[int, int, int]
    sky_bottom: tuple[int, int, int]
    treeline_height: float
    buildings: tuple[Building, ...]
    trees: tuple[Tree, ...]
    things: tuple[Thing, ...]
    crosswalks: tuple[float, ...] = field(default=())

    @property
    def road_half(self) -> float:
        return self.lanes * self.lane_width / 2

    @property
    def thing_classes(self) -> dict[int, int]:
        """Thing segment id in the id map -> class id."""
        return {THING_ID_BASE + th.instance_id: th.class_id for th in self.things}


def _color(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int, int]:
    c = rng.integers(lo, hi, 3)
    return int(c[0]), int(c[1]), int(c[2])


def _gray(rng: np.random.Generator, lo: int, hi: int, tint: int = 8) -> tuple[int, int, int]:
    g = int(rng.integers(lo, hi))
    t = rng.integers(-tint, tint + 1, 3)
    return tuple(int(np.clip(g + d, 0, 255)) for d in t)  # type: ignore[return-value]


CAR_COLORS = ((30, 30, 30), (230, 230, 230), (160, 160, 165), (40, 40, 160), (150, 60, 30),
              (40, 110, 40), (20, 150, 210), (110, 110, 115), (60, 30, 90), (200, 200, 40))
SIGN_COLORS = ((40, 40, 200), (180, 90, 20), (40, 200, 230), (240, 240, 240), (40, 140, 40))


def build_world(seed: int, z_start: float, z_end: float, density: float = 1.0,
                ego_x: float = 0.0, ego_speed: float = 0.0) -> World:
    """Lay out a street from z_start to z_end; density scales how many things it holds."""
    rng = np.random.default_rng(seed)
    lanes = int(rng.choice([2, 2, 3, 4]))
    lane_w = float(rng.uniform(2.9, 3.8))
    road_half = lanes * lane_w / 2
    sidewalk = (float(rng.uniform(1.5, 4.5)) if rng.random() > 0.15 else 0.0,
                float(rng.uniform(1.5, 4.5)) if rng.random() > 0.15 else 0.0)
    urban = rng.random()  # 0 = leafy suburb, 1 = dense city
    buildings: list[Building] = []
    trees: list[Tree] = []
    for side, walk in ((-1, sidewalk[0]), (1, sidewalk[1])):
        edge = road_half + walk
        z = z_start - rng.uniform(0, 20)
        while z < z_end:
            length = float(rng.uniform(8, 45))
            if rng.random() < 0.35 + 0.6 * urban:
                setback = float(rng.uniform(0, 1.0) if walk > 0 and rng.random() < 0.6 else rng.uniform(1, 8))
                buildings.append(Building(
                    side, edge + setback, z, z + length, float(rng.uniform(5, 12 + 25 * urban)),
                    float(rng.uniform(8, 20)), _color(rng, 60, 220), _gray(rng, 20, 110, 20),
                    float(rng.uniform(2.8, 3.6)), float(rng.uniform(1.8, 3.2))))
            z += length + (rng.uniform(0, 12) if rng.random() < 0.6 else 0.0)
        z = z_start + rng.uniform(0, 10)
        while z < z_end:
            z += float(rng.exponential(8 + 25 * urban))
            x = side * (edge + rng.uniform(-0.6, 0.4) if walk > 0 else road_half + rng.uniform(1, 4))
            trees.append(Tree(float(x), float(z), float(rng.uniform(1.5, 3.5)), float(rng.uniform(1.2, 3.5)),
                              _color(rng, 30, 120)))
    things: list[Thing] = []

    def add(**kw: object) -> None:
        things.append(Thing(instance_id=len(things) + 1, **kw))  # type: ignore[arg-type]

    def car_look() -> dict[str, object]:
        base = CAR_COLORS[int(rng.integers(len(CAR_COLORS)))]
        jitter = rng.integers(-20, 21, 3)
        color = tuple(int(np.clip(c + d, 0, 255)) for c, d in zip(base, jitter, strict=True))
        variant = int(rng.integers(3))  # 0 hatch, 1 sedan, 2 van
        length = float(rng.uniform(3.8, 4.8) if variant < 2 else rng.uniform(4.5, 5.5))
        height = float(rng.uniform(1.4, 1.6) if variant < 2 else rng.uniform(1.8, 2.3))
        return {"class_id": CAR, "length": length, "width": float(rng.uniform(1.7, 2.0)), "height": height,
                "color": color, "variant": variant}

    # parked cars along both kerbs, in runs
    for side in (-1, 1):
        z = z_start + rng.uniform(0, 15)
        while z < z_end:
            if rng.random() < 0.5 * density:
                for _ in range(int(rng.integers(1, 6))):
                    look = car_look()
                    add(x=float(side * (road_half - look["width"] / 2 - rng.uniform(0.1, 0.5))),  # type: ignore[operator]
                        z=float(z), vx=0.0, vz=0.0, yaw=float(rng.normal(0, 0.06)), **look)
                    z += float(look["length"]) + rng.uniform(0.6, 3.0)  # type: ignore[arg-type]
            z += float(rng.uniform(5, 40))
    # moving traffic: one speed per lane so cars in a lane never drive through each other
    lane_centres = [-road_half + lane_w * (i + 0.5) for i in range(lanes)]
    for i, xc in enumerate(lane_centres):
        oncoming = lanes > 1 and i < lanes // 2
        if oncoming:
            speed = -float(rng.uniform(6, 15))
        elif abs(xc - ego_x) < lane_w / 2:
            speed = ego_speed + float(rng.uniform(0.5, 3))  # the lead car pulls away from the camera
        else:
            speed = float(rng.uniform(3, 15))
        if ego_speed == 0.0 and abs(xc - ego_x) < lane_w / 2:
            speed = 0.0
        span_end = z_end + (abs(speed) * 60 if oncoming else 0)
        # the ego lane starts clear ahead of the camera (at z = 0) so no car drives through it
        z = (max(z_start, 0.0) + 12 if abs(xc - ego_x) < lane_w / 2 else z_start) + rng.uniform(0, 10)
        while z < span_end:
            if rng.random() < 0.7 * density:
                look = car_look()
                add(x=float(xc + rng.normal(0, 0.15)), z=float(z), vx=0.0, vz=speed,
                    yaw=float(np.pi if oncoming else 0.0), **look)
                z += float(look["length"])  # type: ignore[arg-type]
            z += float(rng.uniform(6, 45))
    # people on the sidewalks, in small groups, and a few crossing the road
    for side, walk in ((-1, sidewalk[0]), (1, sidewalk[1])):
        if walk <= 0:
            continue
        z = z_start + rng.uniform(0, 10)
        while z < z_end:
            z += float(rng.exponential(25 / density))
            for _ in range(int(rng.choice([1, 1, 1, 2, 2, 3, 4]))):
                walking = rng.random() < 0.7
                add(class_id=PERSON, x=float(side * (road_half + rng.uniform(0.3, walk - 0.2))),
                    z=float(z + rng.uniform(-1.5, 1.5)), vx=0.0,
                    vz=float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.8)) if walking else 0.0,
                    yaw=0.0, length=0.3, width=float(rng.uniform(0.4, 0.6)), height=float(rng.uniform(1.5, 1.95)),
                    color=_color(rng, 20, 230), variant=int(rng.integers(4)), color2=_color(rng, 20, 200))
    crosswalks = []
    z = z_start + rng.uniform(20, 80)
    while z < z_end:
        crosswalks.append(float(z))
        for _ in range(int(rng.integers(0, int(4 * density + 1)))):
            direction = float(rng.choice([-1, 1]))
            add(class_id=PERSON, x=float(-direction * rng.uniform(0, road_half)), z=float(z + rng.uniform(-1, 3)),
                vx=float(direction * rng.uniform(0.7, 1.5)), vz=0.0, yaw=0.0, length=0.3,
                width=float(rng.uniform(0.4, 0.6)), height=float(rng.uniform(1.5, 1.95)),
                color=_color(rng, 20, 230), variant=int(rng.integers(4)), color2=_color(rng, 20, 200))
        z += float(rng.uniform(60, 200))
    # signs on poles at the kerb
    for side in (-1, 1):
        z = z_start + rng.uniform(0, 20)
        while z < z_end:
            z += float(rng.exponential(35 / density))
            size = float(rng.uniform(0.5, 0.9))
            add(class_id=TRAFFIC_SIGN, x=float(side * (road_half + rng.uniform(0.2, 0.8))), z=float(z), vx=0.0,
                vz=0.0, yaw=0.0, length=0.1, width=size, height=float(rng.uniform(2.0, 3.2)),
                color=SIGN_COLORS[int(rng.integers(len(SIGN_COLORS)))], variant=int(rng.integers(7)),
                color2=(240, 240, 240) if rng.random() < 0.7 else (20, 20, 20))
    grass = _color(rng, 30, 110)
    return World(
        seed=seed, lanes=lanes, lane_width=lane_w, sidewalk=sidewalk, z_end=z_end,
        road_color=_gray(rng, 50, 120, 4), sidewalk_color=_gray(rng, 110, 190, 10),
        grass_color=(int(grass[0] * 0.5), int(grass[1] * 1.0 + 40) % 256, int(grass[2] * 0.6)),
        sky_top=_color(rng, 120, 220) if rng.random() < 0.3 else (int(rng.integers(170, 240)),
                                                                  int(rng.integers(110, 170)),
                                                                  int(rng.integers(40, 110))),
        sky_bottom=_color(rng, 180, 250),
        treeline_height=float(rng.uniform(3, 20)),
        buildings=tuple(buildings), trees=tuple(trees), things=tuple(things), crosswalks=tuple(crosswalks))
