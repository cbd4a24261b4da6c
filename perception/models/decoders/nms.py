"""Non-maximum suppression in numpy: class-aware box NMS, top-k, and max-pool center peaks.

Shared by the YOLO-seg and Panoptic-DeepLab decoders. The graph folder (perception.tools.fold)
builds the same operations as ONNX nodes; the rules here are the reference it must agree with:
a box is suppressed when its IoU with a kept box of the same class is strictly greater than the
threshold, and candidates are visited by score, highest first, ties broken by lower index.
"""

from __future__ import annotations

import cv2
import numpy as np


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, highest first, ties by lower index (deterministic)."""
    n = len(values)
    if k <= 0 or n == 0:
        return np.zeros(0, np.intp)
    if n > k:
        # argpartition is O(n); only the survivors get the full (stable) sort
        part = np.argpartition(-values, k - 1)[:k]
        threshold = values[part].min()
        part = np.nonzero(values >= threshold)[0]
    else:
        part = np.arange(n)
    order = part[np.lexsort((part, -values[part]))]
    return order[:k]


def box_iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes (N, 4) -> (N, N); degenerate boxes have IoU 0 with everything."""
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    areas = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    iw = np.clip(np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :]), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :]), 0, None)
    inter = iw * ih
    union = areas[:, None] + areas[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def class_aware_nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                    iou_threshold: float, max_keep: int) -> np.ndarray:
    """Greedy NMS within each class; returns kept indices, highest score first, at most max_keep.

    The IoU matrix is computed once (N is capped by the caller, e.g. 300 candidates -> 90k
    entries); the loop runs once per kept box, each step a vectorized row update.
    """
    n = len(scores)
    if n == 0 or max_keep <= 0:
        return np.zeros(0, np.intp)
    iou = box_iou_matrix(boxes.astype(np.float64, copy=False))
    same_class = class_ids[:, None] == class_ids[None, :]
    suppresses = (iou > iou_threshold) & same_class
    order = top_k(scores, n)
    alive = np.ones(n, bool)
    keep: list[int] = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(int(i))
        if len(keep) == max_keep:
            break
        alive &= ~suppresses[i]
    return np.asarray(keep, np.intp)


def center_peaks(heat: np.ndarray, kernel: int, threshold: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Panoptic-DeepLab center NMS: local maxima of a max-pool, above threshold, top k.

    Returns centers (M, 2) as float32 (y, x) and their scores, highest first.
    """
    element = cv2.getStructuringElement(cv2.MORPH_RECT, (kernel, kernel))
    pooled = cv2.dilate(heat, element)
    peaks = (heat == pooled) & (heat > threshold)
    ys, xs = np.nonzero(peaks)
    values = heat[ys, xs]
    order = top_k(values, k)
    return np.stack([ys[order], xs[order]], axis=1).astype(np.float32), values[order]


def centers_from_flat(indices: np.ndarray, scores: np.ndarray, width: int,
                      threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Centers given by a folded graph as flat (y * width + x) top-k indices and scores.

    The graph zeroes non-peaks before its TopK, so entries at or below the threshold are padding.
    """
    keep = scores > threshold
    flat = indices[keep].astype(np.int64)
    ys, xs = flat // width, flat % width
    return np.stack([ys, xs], axis=1).astype(np.float32), scores[keep].astype(np.float32)
