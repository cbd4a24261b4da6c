"""Panoptic fusion: the one place where instances and stuff are pasted into an id map.

Rules (shared by yolo_seg, yolo_seg + semantic, and panoptic_deeplab):

- Instances are pasted highest score first; a pixel already taken stays with the earlier
  (higher-scoring) instance. An instance whose still-free part is smaller than
  `overlap_threshold` of its own mask, or than `min_area` pixels, is dropped: it is mostly
  hidden behind better detections, so it would only leave a sliver (detectron2's panoptic
  combine uses the same 0.5 default).
- Stuff comes from a per-pixel class map, filling only pixels no instance took; a stuff
  class whose free region is smaller than its minimum area is left void.

The canvas tracks each segment's area and box while pasting, so a decoder working at
source resolution gets its Segmentation without a second pass over the id map (that pass
costs ~6 ms at 1280x720). A canvas at network resolution is resampled with to_source().
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from perception.models.preprocess import Geometry
from perception.models.segmentation import Segmentation, Segments

OVERLAP_THRESHOLD = 0.5


class Canvas:
    """An id map being filled segment by segment (0 = void, segment k has value k)."""

    def __init__(self, height: int, width: int, max_segments: int = 65534) -> None:
        dtype = np.uint16 if max_segments < np.iinfo(np.uint16).max else np.uint32
        self.id_map = np.zeros((height, width), dtype)
        self._class_ids: list[int] = []
        self._scores: list[float] = []
        self._things: list[bool] = []
        self._areas: list[int] = []
        self._boxes: list[tuple[int, int, int, int] | None] = []

    def __len__(self) -> int:
        return len(self._class_ids)

    def paste_instance(self, mask: np.ndarray, x0: int, y0: int, class_id: int, score: float, *,
                       overlap_threshold: float = OVERLAP_THRESHOLD, min_area: int = 1) -> bool:
        """Paste a boolean mask whose top-left pixel is (x0, y0); False if the overlap rule drops it."""
        h, w = mask.shape
        region = self.id_map[y0:y0 + h, x0:x0 + w]
        if region.shape != mask.shape:
            raise ValueError(f"mask {mask.shape} at ({x0}, {y0}) leaves the canvas {self.id_map.shape}")
        total = int(np.count_nonzero(mask))
        visible = mask & (region == 0)
        area = int(np.count_nonzero(visible))
        if total == 0 or area < max(min_area, 1) or area < overlap_threshold * total:
            return False
        region[visible] = self._next_id()
        bx0, by0, bx1, by1 = _bbox(visible)
        self._record(class_id, score, True, area, (x0 + bx0, y0 + by0, x0 + bx1, y0 + by1))
        return True

    def paste_labels(self, ys: np.ndarray, xs: np.ndarray, labels: np.ndarray,
                     segments: Iterable[tuple[int, float]]) -> None:
        """Paste non-overlapping things given per pixel: pixel (ys[i], xs[i]) belongs to labels[i].

        labels index `segments` ((class_id, score) per label); label -1 leaves the pixel alone.
        Used by bottom-up decoders (Panoptic-DeepLab) whose grouping already decided every pixel,
        at network resolution: their boxes are left to to_source() (or a recount in segmentation()).
        """
        pairs = list(segments)
        if not pairs:
            return
        first = len(self) + 1
        keep = labels >= 0
        ys, xs, labels = ys[keep], xs[keep], labels[keep]
        self.id_map[ys, xs] = (labels + first).astype(self.id_map.dtype)
        areas = np.bincount(labels, minlength=len(pairs))
        for k, (class_id, score) in enumerate(pairs):
            self._record(class_id, score, True, int(areas[k]), None)

    def fill_stuff(self, semantic: np.ndarray, stuff_ids: Iterable[int], min_area: int,
                   confidence: np.ndarray | None = None) -> None:
        """Fill free pixels from a class map (same size as the canvas), one segment per stuff class.

        Score: mean per-pixel confidence over the region when given, else 1.0.
        """
        free = self.id_map == 0
        for class_id in stuff_ids:
            region = (semantic == class_id) & free
            area = int(np.count_nonzero(region))
            if area == 0 or area < min_area:
                continue
            score = float(confidence[region].mean()) if confidence is not None else 1.0
            self.id_map[region] = self._next_id()
            self._record(class_id, score, False, area, _bbox(region))

    def segmentation(self) -> Segmentation:
        """The canvas as it is (its own resolution), with the tracked areas and boxes."""
        if any(box is None for box in self._boxes):  # paste_labels segments: count them now
            return Segmentation.from_id_map(self.id_map, np.asarray(self._class_ids, np.int32),
                                            np.asarray(self._scores, np.float32), np.asarray(self._things, bool))
        segments = Segments(
            ids=np.arange(1, len(self) + 1, dtype=np.uint32),
            class_ids=np.asarray(self._class_ids, np.int32),
            instance_ids=np.zeros(len(self), np.uint32),
            is_thing=np.asarray(self._things, bool),
            scores=np.asarray(self._scores, np.float32),
            bboxes=np.asarray(self._boxes, np.int32).reshape(-1, 4),
            areas=np.asarray(self._areas, np.int64),
        )
        return Segmentation(id_map=self.id_map, segments=segments)

    def to_source(self, geometry: Geometry) -> Segmentation:
        """A network-resolution canvas mapped back to the source image (letterbox/stretch undone).

        Areas and boxes are those of the source-size map (segments that vanish are dropped), but
        counted on the network-size map: the nearest-neighbour resize copies each sampled network
        row and column a known number of times (skipping others when shrinking), so a source area
        is a weighted count over the sampled pixels and a source box spans the source rows/columns
        copied from the rows/columns where the segment appears. Same numbers as recounting the
        source map (Segmentation.from_id_map), ~6 ms less at 1280x720.
        """
        x0, y0, x1, y1 = geometry.content_box(*self.id_map.shape)
        crop = self.id_map[y0:y1, x0:x1]
        source_map = geometry.map_to_source(self.id_map)
        # network rows/columns the resize samples, how often, and which one each source row/column is
        used_rows, row_of, row_repeats = np.unique(_nearest_source_index(crop.shape[0], geometry.src_h),
                                                   return_inverse=True, return_counts=True)
        used_cols, col_of, col_repeats = np.unique(_nearest_source_index(crop.shape[1], geometry.src_w),
                                                   return_inverse=True, return_counts=True)
        sampled = crop[used_rows][:, used_cols]  # what the source map is made of (skipped pixels left out)
        n = len(self)
        weights = np.outer(row_repeats, col_repeats).ravel()
        areas = np.rint(np.bincount(sampled.ravel(), weights, minlength=n + 1)[: n + 1]).astype(np.int64)
        in_row = np.zeros((n + 1, sampled.shape[0]), bool)
        in_col = np.zeros((n + 1, sampled.shape[1]), bool)
        in_row[sampled, np.arange(sampled.shape[0])[:, None]] = True
        in_col[sampled, np.arange(sampled.shape[1])[None, :]] = True
        src_rows, src_cols = in_row[:, row_of], in_col[:, col_of]  # (n + 1, src_h), (n + 1, src_w)
        boxes = np.stack([src_cols.argmax(axis=1), src_rows.argmax(axis=1),
                          geometry.src_w - src_cols[:, ::-1].argmax(axis=1),
                          geometry.src_h - src_rows[:, ::-1].argmax(axis=1)], axis=1).astype(np.int32)[1:]
        keep = areas[1:] > 0
        if not keep.all():
            lut = np.zeros(n + 1, source_map.dtype)
            lut[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=source_map.dtype)
            source_map = lut[source_map]
        count = int(keep.sum())
        segments = Segments(
            ids=np.arange(1, count + 1, dtype=np.uint32),
            class_ids=np.asarray(self._class_ids, np.int32).reshape(-1)[keep],
            instance_ids=np.zeros(count, np.uint32),
            is_thing=np.asarray(self._things, bool).reshape(-1)[keep],
            scores=np.asarray(self._scores, np.float32).reshape(-1)[keep],
            bboxes=boxes[keep].reshape(-1, 4),
            areas=areas[1:][keep],
        )
        return Segmentation(id_map=np.ascontiguousarray(source_map), segments=segments)

    def _next_id(self) -> int:
        return len(self) + 1

    def _record(self, class_id: int, score: float, thing: bool, area: int,
                box: tuple[int, int, int, int] | None) -> None:
        self._class_ids.append(int(class_id))
        self._scores.append(float(score))
        self._things.append(thing)
        self._areas.append(area)
        self._boxes.append(box)


def _nearest_source_index(size: int, source_size: int) -> np.ndarray:
    """For each of source_size output pixels, the input pixel that Geometry.map_to_source's
    nearest-neighbour resize copies (asked of OpenCV itself, so the two always agree)."""
    if size == source_size:
        return np.arange(size)
    ramp = np.arange(size, dtype=np.float32)[None, :]
    return np.asarray(cv2.resize(ramp, (source_size, 1), interpolation=cv2.INTER_NEAREST)[0], np.int64)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """xyxy-exclusive box of a non-empty boolean mask."""
    rows: np.ndarray = np.any(mask, axis=1)
    cols: np.ndarray = np.any(mask, axis=0)
    y0 = int(rows.argmax())
    y1 = rows.shape[0] - int(rows[::-1].argmax())
    x0 = int(cols.argmax())
    x1 = cols.shape[0] - int(cols[::-1].argmax())
    return x0, y0, x1, y1


def classes_and_confidence(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel winning class (int32, the lowest id on ties, as argmax) and its softmax
    probability, for finite logits (C, H, W).

    The class comes from comparing each channel with the per-pixel maximum, which the
    probability needs anyway: numpy's argmax along the first axis of (C, H, W) costs ~2x that.
    """
    logits = logits.astype(np.float32, copy=False)
    top = logits.max(axis=0)
    classes = np.zeros(top.shape, np.int16 if logits.shape[0] <= np.iinfo(np.int16).max else np.int32)
    for c in range(logits.shape[0] - 1, -1, -1):  # downwards, so the lowest tied class is written last
        np.putmask(classes, logits[c] == top, c)
    confidence = (1.0 / np.exp(logits - top).sum(axis=0)).astype(np.float32)
    return classes.astype(np.int32), confidence
