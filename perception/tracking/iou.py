"""Persistent instance ids for things across frames: greedy IoU matching per class.

Deterministic (ties broken by order), bounded (tracks unseen for max_missed frames are
forgotten), O(tracks x detections) on boxes only, so it costs microseconds per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.core.segmentation import Segmentation


@dataclass
class _Track:
    track_id: int
    class_id: int
    box: np.ndarray
    missed: int = 0


class IouTracker:
    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5, max_tracks: int = 1024) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.max_tracks = max_tracks
        self._tracks: list[_Track] = []
        self._next_id = 1

    def update(self, segmentation: Segmentation) -> Segmentation:
        """Return the segmentation with instance_ids filled for things (stuff stays 0)."""
        seg = segmentation.segments
        ids = np.zeros(len(seg), np.uint32)
        things = np.nonzero(seg.is_thing)[0]
        boxes = seg.bboxes[things].astype(np.float32)
        iou = _iou_matrix(np.array([t.box for t in self._tracks], np.float32).reshape(-1, 4), boxes)
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


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)
