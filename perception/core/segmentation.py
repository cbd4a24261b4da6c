"""The one result type every model decodes to: a panoptic id map plus a segments table.

Semantic-only models give stuff segments, instance-only models thing segments, panoptic
models both, so planners always receive the same shape of message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.core.tracks import PredictedTracks, TrackColumns

VOID = 0


@dataclass(frozen=True)
class Segments:
    """Structure of arrays, one row per segment; row i describes id map value ids[i].

    bboxes are [x0, y0, x1, y1] in id-map pixels with x1/y1 exclusive; areas in pixels;
    instance_ids are tracker ids for things (0 until a tracker assigns one, always 0 for stuff);
    tracks holds the tracker's per-row columns (state, age, kinematics), None before tracking.
    """

    ids: np.ndarray  # (N,) uint32, >0, unique
    class_ids: np.ndarray  # (N,) int32
    instance_ids: np.ndarray  # (N,) uint32
    is_thing: np.ndarray  # (N,) bool
    scores: np.ndarray  # (N,) float32 in [0, 1]
    bboxes: np.ndarray  # (N, 4) int32
    areas: np.ndarray  # (N,) int64
    tracks: TrackColumns | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        expected = {
            "ids": (self.ids, (n,)),
            "class_ids": (self.class_ids, (n,)),
            "instance_ids": (self.instance_ids, (n,)),
            "is_thing": (self.is_thing, (n,)),
            "scores": (self.scores, (n,)),
            "bboxes": (self.bboxes, (n, 4)),
            "areas": (self.areas, (n,)),
        }
        for name, (array, shape) in expected.items():
            if array.shape != shape:
                raise ValueError(f"segments.{name} has shape {array.shape}, expected {shape}")
        if self.tracks is not None and len(self.tracks) != n:
            raise ValueError(f"segments.tracks has {len(self.tracks)} rows, expected {n}")
        if n and (int(self.ids.min()) <= VOID or len(np.unique(self.ids)) != n):
            raise ValueError("segment ids must be unique and > 0 (0 is void)")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> Segments:
        return cls(
            ids=np.zeros(0, np.uint32),
            class_ids=np.zeros(0, np.int32),
            instance_ids=np.zeros(0, np.uint32),
            is_thing=np.zeros(0, bool),
            scores=np.zeros(0, np.float32),
            bboxes=np.zeros((0, 4), np.int32),
            areas=np.zeros(0, np.int64),
        )

    def with_instance_ids(self, instance_ids: np.ndarray, tracks: TrackColumns | None = None) -> Segments:
        return Segments(
            ids=self.ids,
            class_ids=self.class_ids,
            instance_ids=np.asarray(instance_ids, np.uint32),
            is_thing=self.is_thing,
            scores=self.scores,
            bboxes=self.bboxes,
            areas=self.areas,
            tracks=tracks,
        )


@dataclass(frozen=True)
class Segmentation:
    """Panoptic id map (H, W) uint16/uint32, 0 = void, plus the table of its segments; a tracker
    that predicts unseen objects adds them apart (never drawn into the id map)."""

    id_map: np.ndarray
    segments: Segments
    predicted: PredictedTracks | None = None

    def __post_init__(self) -> None:
        if self.id_map.ndim != 2 or self.id_map.dtype not in (np.uint16, np.uint32):
            raise ValueError(f"id_map must be 2-D uint16/uint32, got {self.id_map.shape} {self.id_map.dtype}")

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.id_map.shape[0]), int(self.id_map.shape[1])

    def mask(self, segment_id: int) -> np.ndarray:
        """Boolean mask of one segment."""
        return self.id_map == segment_id

    def semantic(self, void_class: int = -1) -> np.ndarray:
        """Per-pixel class id (void_class where the id map is void)."""
        lut = np.full(int(self.segments.ids.max(initial=0)) + 1, void_class, np.int32)
        lut[self.segments.ids] = self.segments.class_ids
        return lut[self.id_map]

    @classmethod
    def from_id_map(
        cls,
        id_map: np.ndarray,
        class_ids: np.ndarray,
        scores: np.ndarray,
        is_thing: np.ndarray,
    ) -> Segmentation:
        """Build the table for an id map whose values are 1..N (row i-1 describes value i).

        Segments whose pixels were all overwritten are dropped and the rest renumbered,
        so the table never lists an empty segment.
        """
        n = len(class_ids)
        dtype = np.uint16 if n < np.iinfo(np.uint16).max else np.uint32
        id_map = np.ascontiguousarray(id_map, dtype=dtype)
        areas, bboxes = segment_stats(id_map, n)
        keep = areas[1:] > 0
        ids = np.arange(1, n + 1, dtype=np.uint32)
        if not keep.all():
            lut = np.zeros(n + 1, dtype)
            lut[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=dtype)
            id_map = lut[id_map]
            ids = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
        segments = Segments(
            ids=ids,
            class_ids=np.asarray(class_ids, np.int32)[keep],
            instance_ids=np.zeros(len(ids), np.uint32),
            is_thing=np.asarray(is_thing, bool)[keep],
            scores=np.asarray(scores, np.float32)[keep],
            bboxes=bboxes[1:][keep],
            areas=areas[1:][keep],
        )
        return cls(id_map=id_map, segments=segments)


def segment_stats(id_map: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Areas (n+1,) and xyxy-exclusive boxes (n+1, 4) of ids 0..n in one pass per axis."""
    h, w = id_map.shape
    areas = np.bincount(id_map.ravel(), minlength=n + 1)[: n + 1].astype(np.int64)
    rows = np.zeros((n + 1, h), bool)
    cols = np.zeros((n + 1, w), bool)
    rows[id_map, np.arange(h)[:, None]] = True
    cols[id_map, np.arange(w)[None, :]] = True
    bboxes = occupancy_boxes(rows, cols)
    bboxes[areas == 0] = 0
    return areas, bboxes


def occupancy_boxes(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """xyxy-exclusive boxes (n, 4) from which rows (n, H) and columns (n, W) each segment occupies."""
    h, w = rows.shape[1], cols.shape[1]
    return np.stack([cols.argmax(axis=1), rows.argmax(axis=1), w - cols[:, ::-1].argmax(axis=1),
                     h - rows[:, ::-1].argmax(axis=1)], axis=1).astype(np.int32)
