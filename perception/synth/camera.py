"""Pinhole camera on the ground-relative world frame used by the synthetic scenes.

World: X right, Y up, Z forward along the road (metres). Camera space: x right, y down,
z forward. Rotations are small (yaw, pitch, roll in radians) so nothing fancy is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEAR = 0.5  # metres; geometry nearer than this is clipped, as a lens would never see it sharply anyway


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    focal: float
    cx: float
    cy: float
    position: tuple[float, float, float]
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    _rot: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rot", self.rotation())

    def rotation(self) -> np.ndarray:
        """World-to-camera rotation (camera y points down)."""
        cy_, sy = np.cos(self.yaw), np.sin(self.yaw)
        cp, sp = np.cos(self.pitch), np.sin(self.pitch)
        cr, sr = np.cos(self.roll), np.sin(self.roll)
        yaw = np.array([[cy_, 0, -sy], [0, 1, 0], [sy, 0, cy_]])
        pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        flip = np.diag([1.0, -1.0, 1.0])  # world Y up -> camera y down
        roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
        return roll @ flip @ pitch @ yaw

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 3) camera-space points."""
        return (np.asarray(points, np.float64) - np.asarray(self.position)) @ self._rot.T

    def project(self, cam_points: np.ndarray) -> np.ndarray:
        """(N, 3) camera-space points with z > 0 -> (N, 2) pixel coordinates."""
        z = cam_points[:, 2:3]
        return np.concatenate([self.cx + self.focal * cam_points[:, 0:1] / z,
                               self.cy + self.focal * cam_points[:, 1:2] / z], axis=1)

    def polygon(self, world_points: np.ndarray) -> np.ndarray | None:
        """World polygon -> pixel polygon clipped at the near plane, or None if wholly behind."""
        cam = self.to_camera(world_points)
        if (cam[:, 2] >= NEAR).all():
            return self.project(cam)
        clipped = clip_near(cam)
        if len(clipped) < 3:
            return None
        return self.project(clipped)


def clip_near(cam: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman against the plane z = NEAR (one plane, so any polygon works)."""
    out: list[np.ndarray] = []
    n = len(cam)
    for i in range(n):
        a, b = cam[i], cam[(i + 1) % n]
        a_in, b_in = a[2] >= NEAR, b[2] >= NEAR
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if out else np.zeros((0, 3))
