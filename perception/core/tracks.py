"""Per-segment track columns a tracker adds to the segments table (state, age, kinematics).

Row i describes the same segment as row i of the Segments it belongs to. Rows without a
track (stuff, things below the tracker's score floor or over its detection cap) carry state
"none", zeros and velocity_valid False.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# codes of the `state` column, in wire order (docs/protocol.md 5.1.1)
TRACK_STATES = ("none", "tentative", "confirmed", "lost")
NONE, TENTATIVE, CONFIRMED, LOST = range(len(TRACK_STATES))


@dataclass(frozen=True)
class TrackColumns:
    state: np.ndarray  # (N,) uint8, index into TRACK_STATES
    age_s: np.ndarray  # (N,) float64, seconds since first_seen_ns (source clock)
    hits: np.ndarray  # (N,) uint32, frames the track was matched in, this one included
    first_seen_ns: np.ndarray  # (N,) int64, stamp_ns of the track's first frame (source clock)
    centroid: np.ndarray  # (N, 2) float32, x, y of the segment's pixels in id-map pixels
    velocity: np.ndarray  # (N, 2) float32, px/s of the filtered centroid, source clock
    velocity_valid: np.ndarray  # (N,) bool

    def __post_init__(self) -> None:
        n = len(self.state)
        shapes = {"state": (n,), "age_s": (n,), "hits": (n,), "first_seen_ns": (n,), "centroid": (n, 2),
                  "velocity": (n, 2), "velocity_valid": (n,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"tracks.{name} has shape {getattr(self, name).shape}, expected {shape}")
        if n and int(self.state.max()) >= len(TRACK_STATES):
            raise ValueError(f"tracks.state holds codes above {len(TRACK_STATES) - 1}")

    def __len__(self) -> int:
        return len(self.state)

    @classmethod
    def untracked(cls, n: int) -> TrackColumns:
        return cls(state=np.zeros(n, np.uint8), age_s=np.zeros(n), hits=np.zeros(n, np.uint32),
                   first_seen_ns=np.zeros(n, np.int64), centroid=np.zeros((n, 2), np.float32),
                   velocity=np.zeros((n, 2), np.float32), velocity_valid=np.zeros(n, bool))

    def state_names(self) -> list[str]:
        return [TRACK_STATES[s] for s in self.state.tolist()]


@dataclass(frozen=True)
class PredictedTracks:
    """Tracks not seen in this frame but still predicted (state lost): where the filter expects
    each object now, never part of the id map or the segments table."""

    instance_ids: np.ndarray  # (N,) uint32
    class_ids: np.ndarray  # (N,) int64
    bboxes: np.ndarray  # (N, 4) float64, predicted [x0, y0, x1, y1] in id-map pixels (may leave the image)
    centroid: np.ndarray  # (N, 2) float64, predicted centroid, id-map pixels
    velocity: np.ndarray  # (N, 2) float64, px/s, source clock
    first_seen_ns: np.ndarray  # (N,) int64, source clock
    lost_s: np.ndarray  # (N,) float64, seconds since the track was last seen (source clock)

    def __post_init__(self) -> None:
        n = len(self.instance_ids)
        shapes = {"instance_ids": (n,), "class_ids": (n,), "bboxes": (n, 4), "centroid": (n, 2), "velocity": (n, 2),
                  "first_seen_ns": (n,), "lost_s": (n,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"predicted.{name} has shape {getattr(self, name).shape}, expected {shape}")

    def __len__(self) -> int:
        return len(self.instance_ids)

    @classmethod
    def none(cls) -> PredictedTracks:
        return cls(np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros((0, 2)),
                   np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0))
