"""Persistent instance ids for things across frames: greedy IoU matching per class.

Deterministic (ties broken by order), bounded (tracks unseen for max_missed frames are
forgotten), O(tracks x detections) on boxes only, so it costs microseconds per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.core.errors import ConfigError
from perception.core.segmentation import Segmentation
from perception.tracking.matching import box_iou
from perception.tracking.reports import TrackerReports


@dataclass(frozen=True)
class IouSettings:
    """[tracking] keys of tracker = "iou"."""

    iou_threshold: float = 0.3
    max_missed: int = 5  # frames (not seconds: this tracker counts frames)
    max_tracks: int = 1024

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ConfigError(f"[tracking] iou_threshold = {self.iou_threshold:g} must be above 0 and at most 1",
                              "a box overlap in (0, 1], e.g. 0.3")
        if self.max_missed < 0:
            raise ConfigError(f"[tracking] max_missed = {self.max_missed} is negative",
                              "frames a track survives unseen, e.g. 5")
        if self.max_tracks < 1:
            raise ConfigError(f"[tracking] max_tracks = {self.max_tracks} must be at least 1", "e.g. 1024")


@dataclass
class _Track:
    track_id: int
    class_id: int
    box: np.ndarray
    missed: int = 0


class IouTracker:
    """tracker = "iou": the node's first tracker, kept as the baseline bytetrack is measured against."""

    settings_type = IouSettings

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5, max_tracks: int = 1024) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.max_tracks = max_tracks
        self._tracks: list[_Track] = []
        self._next_id = 1
        self.reports = TrackerReports()

    def update(self, segmentation: Segmentation, stamp_ns: int = 0) -> Segmentation:
        """Return the segmentation with instance_ids filled for things (stuff stays 0); counts
        frames, so stamp_ns is not used."""
        seg = segmentation.segments
        ids = np.zeros(len(seg), np.uint32)
        things = np.nonzero(seg.is_thing)[0]
        boxes = seg.bboxes[things].astype(np.float32)
        iou = box_iou(np.array([t.box for t in self._tracks], np.float32).reshape(-1, 4), boxes)
        same_class = (np.array([t.class_id for t in self._tracks]).reshape(-1, 1)
                      == seg.class_ids[things].reshape(1, -1))
        iou = np.where(same_class, iou, -1.0)  # never matched, whatever the threshold
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        if iou.size:
            order = np.argsort(-iou, axis=None, kind="stable")
            for flat in order:
                t, d = divmod(int(flat), iou.shape[1])
                if iou[t, d] < self.iou_threshold or iou[t, d] <= 0.0:
                    break
                if t in matched_tracks or d in matched_dets:
                    continue
                matched_tracks.add(t)
                matched_dets.add(d)
                track = self._tracks[t]
                track.box, track.missed = boxes[d], 0
                ids[things[d]] = track.track_id
        for t, track in enumerate(self._tracks):
            if t not in matched_tracks:
                track.missed += 1
        for d in range(len(things)):
            if d not in matched_dets:
                track = _Track(self._next_id, int(seg.class_ids[things[d]]), boxes[d])
                self._next_id = self._next_id + 1 if self._next_id < np.iinfo(np.uint32).max else 1
                self._tracks.append(track)
                ids[things[d]] = track.track_id
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed][-self.max_tracks:]
        return Segmentation(segmentation.id_map, seg.with_instance_ids(ids))
