"""Overlap of tracks and detections (box IoU, mask IoU) and the optimal one-to-one assignment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass(frozen=True)
class MaskCrop:
    """A segment's pixels inside its integer box: mask[y - y0, x - x0]."""

    x0: int
    y0: int
    mask: np.ndarray  # (h, w) bool

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def shifted(self, dx: int, dy: int) -> MaskCrop:
        return MaskCrop(self.x0 + dx, self.y0 + dy, self.mask)


def crop_iou(a: MaskCrop, b: MaskCrop) -> float:
    ha, wa = a.mask.shape
    hb, wb = b.mask.shape
    x0, y0 = max(a.x0, b.x0), max(a.y0, b.y0)
    x1, y1 = min(a.x0 + wa, b.x0 + wb), min(a.y0 + ha, b.y0 + hb)
    area_a, area_b = a.area, b.area
    inter = 0
    if x1 > x0 and y1 > y0:
        inter = int(np.count_nonzero(a.mask[y0 - a.y0:y1 - a.y0, x0 - a.x0:x1 - a.x0]
                                     & b.mask[y0 - b.y0:y1 - b.y0, x0 - b.x0:x1 - b.x0]))
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def mask_iou(tracks: list[MaskCrop | None], dets: list[MaskCrop], box_overlap: np.ndarray) -> np.ndarray:
    """Mask IoU where the boxes overlap at all (elsewhere it is 0 anyway); a track without a
    mask (a box-only detection made it) keeps its box IoU."""
    out = np.zeros(box_overlap.shape)
    for t, d in zip(*np.nonzero(box_overlap > 0), strict=True):
        track = tracks[t]
        out[t, d] = box_overlap[t, d] if track is None else crop_iou(track, dets[d])
    return out


def assign(similarity: np.ndarray, minimum: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (rows, cols) maximising total similarity, each pair at least `minimum`
    (and above 0); similarity of pairs that must never match (other class) is -inf."""
    if similarity.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    allowed = (similarity >= minimum) & (similarity > 0)
    if not allowed.any():
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    cost = np.where(allowed, 1.0 - similarity, 1e6)  # finite: scipy refuses an all-inf row
    rows, cols = linear_sum_assignment(cost)
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]
