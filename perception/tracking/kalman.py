"""Constant-velocity Kalman filter on boxes [cx, cy, w, h], batched over all tracks of a frame.

State x = [cx, cy, w, h, vcx, vcy, vw, vh] in pixels and pixels per second; time steps are
seconds between the frames' source stamps, so a dropped frame is a longer step, never a
distortion. Noise scales with the box (as in SORT/ByteTrack): a near, large object is
measured and accelerates in pixels proportionally to its size. Process noise is white
acceleration (the discrete Wiener model), so the covariance grows with the step as physics
says rather than per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIM = 4  # measured: cx, cy, w, h


@dataclass(frozen=True)
class NoiseModel:
    """Standard deviations as fractions of the box's larger side (pixels, px/s, px/s^2)."""

    measurement: float = 0.05  # of a box's side, plus one pixel of quantisation
    acceleration: float = 1.0  # of a box's side per s^2
    initial_velocity: float = 10.0  # of a box's side per s: a first frame says nothing of motion


def _scale(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(boxes[:, 2], boxes[:, 3]), 1.0)


class BoxKalman:
    """Means (N, 8) and covariances (N, 8, 8) of N tracks; rows follow the tracker's track order."""

    def __init__(self, noise: NoiseModel | None = None) -> None:
        self.noise = noise or NoiseModel()
        self.mean = np.zeros((0, 2 * DIM))
        self.cov = np.zeros((0, 2 * DIM, 2 * DIM))

    def __len__(self) -> int:
        return len(self.mean)

    def add(self, boxes: np.ndarray) -> None:
        """Start one track per measured box (M, 4) [cx, cy, w, h], velocity 0 and uncertain."""
        s = _scale(boxes)
        mean = np.concatenate([boxes, np.zeros_like(boxes)], axis=1)
        var = np.concatenate([np.repeat(((self.noise.measurement * s + 1.0) ** 2)[:, None], DIM, 1),
                              np.repeat(((self.noise.initial_velocity * s) ** 2)[:, None], DIM, 1)], axis=1)
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, var[:, :, None] * np.eye(2 * DIM)[None]])

    def keep(self, rows: np.ndarray) -> None:
        """Keep the tracks at rows (an index or boolean array), in that order."""
        self.mean, self.cov = self.mean[rows], self.cov[rows]

    def predict(self, dt: np.ndarray) -> None:
        """Advance every track by its own step dt (N,) seconds, dt >= 0."""
        if not len(self.mean):
            return
        dt = np.asarray(dt, np.float64).reshape(-1)
        n = len(self.mean)
        f = np.repeat(np.eye(2 * DIM)[None], n, 0)
        f[:, np.arange(DIM), np.arange(DIM) + DIM] = dt[:, None]
        self.mean = np.einsum("nij,nj->ni", f, self.mean)
        q = (self.noise.acceleration * _scale(self.mean[:, :DIM])) ** 2
        qpp, qpv, qvv = q * dt**4 / 4, q * dt**3 / 2, q * dt**2
        cov = f @ self.cov @ f.transpose(0, 2, 1)
        idx = np.arange(DIM)
        cov[:, idx, idx] += qpp[:, None]
        cov[:, idx, idx + DIM] += qpv[:, None]
        cov[:, idx + DIM, idx] += qpv[:, None]
        cov[:, idx + DIM, idx + DIM] += qvv[:, None]
        self.cov = cov

    def update(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """Correct the tracks at rows with their measured boxes (M, 4)."""
        if not len(rows):
            return
        mean, cov = self.mean[rows], self.cov[rows]
        r = (self.noise.measurement * _scale(boxes) + 1.0) ** 2
        s = cov[:, :DIM, :DIM] + r[:, None, None] * np.eye(DIM)[None]
        gain_t = np.linalg.solve(s, cov[:, :DIM, :])  # (M, 4, 8) = S^-1 H P, i.e. K^T
        innovation = boxes - mean[:, :DIM]
        self.mean[rows] = mean + np.einsum("mji,mj->mi", gain_t, innovation)
        self.cov[rows] = cov - gain_t.transpose(0, 2, 1) @ cov[:, :DIM, :]

    def centre_distance2(self, centres: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance (N, M) of measured box centres (M, 2) from each track's
        predicted centre, under the track's centre innovation covariance."""
        if not len(self.mean) or not len(centres):
            return np.zeros((len(self.mean), len(centres)))
        r = (self.noise.measurement * _scale(self.mean[:, :DIM]) + 1.0) ** 2
        s = self.cov[:, :2, :2] + r[:, None, None] * np.eye(2)[None]
        diff = centres[None, :, :] - self.mean[:, None, :2]
        return np.einsum("nmi,nij,nmj->nm", diff, np.linalg.inv(s), diff)

    def boxes(self) -> np.ndarray:
        """Predicted or filtered [cx, cy, w, h] (N, 4), sizes kept at least 1 px."""
        out = self.mean[:, :DIM].copy()
        out[:, 2:] = np.maximum(out[:, 2:], 1.0)
        return out

    def velocities(self) -> np.ndarray:
        """(N, 2) px/s of the box centres."""
        return self.mean[:, DIM:DIM + 2].copy()

    def stop_growth(self, rows: np.ndarray) -> None:
        """Lost tracks coast at constant size: an unseen box must not grow or shrink away."""
        self.mean[rows, DIM + 2:] = 0.0


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)
