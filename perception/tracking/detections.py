"""What a tracker associates: the thing rows of a segments table (or any box detector's output),
cleaned of rows it cannot use and capped, with what was removed counted."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception.core.segmentation import Segmentation
from perception.tracking.matching import MaskCrop


@dataclass(frozen=True)
class Detections:
    """M detections: xyxy boxes (pixels, float), scores, classes; rows = segments-table rows (or -1)."""

    boxes: np.ndarray  # (M, 4) float64
    scores: np.ndarray  # (M,) float64
    class_ids: np.ndarray  # (M,) int64
    rows: np.ndarray  # (M,) intp: row of the segments table each detection came from
    crops: list[MaskCrop] | None = None  # per detection, when masks are known
    centroids: np.ndarray | None = None  # (M, 2) mean x, y of each mask's pixels, when masks are known

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, keep: np.ndarray) -> Detections:
        crops = None if self.crops is None else [self.crops[i] for i in np.flatnonzero(keep)]
        centres = None if self.centroids is None else self.centroids[keep]
        return Detections(self.boxes[keep], self.scores[keep], self.class_ids[keep], self.rows[keep], crops, centres)

    def centres(self) -> np.ndarray:
        """(M, 2) where each object is: its mask's centroid, else its box centre."""
        if self.centroids is not None:
            return self.centroids.astype(np.float64)
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2

    @classmethod
    def of(cls, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> Detections:
        """Box-detector output (no masks): xyxy (M, 4), scores (M,), class ids (M,)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        return cls(boxes, np.asarray(scores, np.float64).reshape(-1), np.asarray(class_ids, np.int64).reshape(-1),
                   np.arange(len(boxes)))


@dataclass(frozen=True)
class Cleaned:
    detections: Detections
    kept: np.ndarray  # (M,) bool over the given detections
    dropped_invalid: int  # non-finite or empty boxes, non-finite scores
    capped: int  # over the detection cap (lowest scores first)


def clean(detections: Detections, max_detections: int) -> Cleaned:
    """Drop rows a filter cannot take (NaN/inf boxes or scores, boxes without area) and keep at
    most max_detections of the rest, best scores first (stable, so ties keep table order)."""
    b = detections.boxes
    with np.errstate(invalid="ignore"):
        valid = (np.isfinite(b).all(axis=1) & np.isfinite(detections.scores)
                 & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
    keep = valid.copy()
    capped = 0
    if int(valid.sum()) > max_detections:
        scores = np.where(valid, detections.scores, -np.inf)
        keep[:] = False
        keep[np.argsort(-scores, kind="stable")[:max_detections]] = True
        capped = int(valid.sum()) - max_detections
    return Cleaned(detections.take(keep), keep, int((~valid).sum()), capped)


def thing_detections(segmentation: Segmentation, with_masks: bool) -> Detections:
    """Thing rows of a segments table; masks cut from the id map inside each box when asked."""
    seg = segmentation.segments
    rows = np.flatnonzero(seg.is_thing)
    boxes = seg.bboxes[rows].astype(np.float64)
    crops = None
    if with_masks:
        crops = []
        for row, (x0, y0, x1, y1) in zip(rows.tolist(), seg.bboxes[rows].tolist(), strict=True):
            crops.append(MaskCrop(x0, y0, segmentation.id_map[y0:y1, x0:x1] == seg.ids[row]))
    return Detections(boxes, seg.scores[rows].astype(np.float64), seg.class_ids[rows].astype(np.int64), rows, crops,
                      centroids(segmentation, rows))


def centroids(segmentation: Segmentation, rows: np.ndarray) -> np.ndarray:
    """(len(rows), 2) mean x, y of each row's pixels, read inside its box only."""
    seg = segmentation.segments
    out = np.zeros((len(rows), 2), np.float32)
    for k, (row, (x0, y0, x1, y1)) in enumerate(zip(rows.tolist(), seg.bboxes[rows].tolist(), strict=True)):
        mask = (segmentation.id_map[y0:y1, x0:x1] == seg.ids[row]).view(np.uint8)
        m = cv2.moments(mask, binaryImage=True)  # one C pass for the count and the coordinate sums
        if m["m00"]:
            out[k] = (x0 + m["m10"] / m["m00"] + 0.5, y0 + m["m01"] / m["m00"] + 0.5)  # pixel centres
    return out
