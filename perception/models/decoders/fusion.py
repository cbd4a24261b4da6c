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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from perception.core.segmentation import Segmentation, Segments, occupancy_boxes
from perception.models.decoders.base import first_index_of, require_finite
from perception.models.errors import DecoderError
from perception.models.preprocess import Geometry

OVERLAP_THRESHOLD = 0.5


@dataclass(frozen=True)
class UnsureStuff:
    """Stuff regions under `area` pixels whose mean class probability is under `confidence` stay
    void: small fragments the model is unsure of (a sliver of sky between trees, a sidewalk patch)
    mostly match nothing, while a region the model is sure of is kept at any size above
    min_area, so perfect heads lose nothing. area = 0 turns the rule off."""

    area: int = 0
    confidence: float = 0.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any], card_name: str) -> UnsureStuff | None:
        area = int(params.get("unsure_stuff_area", 0))
        confidence = float(params.get("unsure_stuff_confidence", 0.0))
        if area < 0 or not 0.0 <= confidence <= 1.0:
            raise DecoderError(f"model card {card_name!r}: unsure_stuff_area = {area}, unsure_stuff_confidence = "
                               f"{confidence} (need an area >= 0 and a probability in [0, 1])",
                               "use e.g. unsure_stuff_area = 320 and unsure_stuff_confidence = 0.8, or area 0 for none")
        return cls(area, confidence) if area > 0 and confidence > 0 else None

    def drops(self, area: int, score: float) -> bool:
        return area < self.area and score < self.confidence


class Canvas:
    """An id map being filled segment by segment (0 = void, segment k has value k)."""

    def __init__(self, height: int, width: int, max_segments: int = 65534) -> None:
        dtype = np.uint16 if max_segments < np.iinfo(np.uint16).max else np.uint32
        self.id_map = np.zeros((height, width), dtype)
        self._class_ids: list[int] = []
        self._scores: list[float] = []
        self._things: list[bool] = []
        self._areas: list[int] = []
        self._boxes: list[tuple[int, int, int, int]] = []

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
        at network resolution. Areas and boxes come from the listed pixels only (few: things), by
        bincount and one row/column occupancy scatter each.
        """
        pairs = list(segments)
        if not pairs:
            return
        first = len(self) + 1
        keep = labels >= 0
        ys, xs, labels = ys[keep], xs[keep], labels[keep]
        self.id_map[ys, xs] = (labels + first).astype(self.id_map.dtype)
        areas = np.bincount(labels, minlength=len(pairs))
        rows = np.zeros((len(pairs), self.id_map.shape[0]), bool)
        cols = np.zeros((len(pairs), self.id_map.shape[1]), bool)
        rows[labels, ys] = True
        cols[labels, xs] = True
        boxes = occupancy_boxes(rows, cols).tolist()
        for k, (class_id, score) in enumerate(pairs):
            x0, y0, x1, y1 = boxes[k]
            self._record(class_id, score, True, int(areas[k]), (x0, y0, x1, y1))

    def fill_stuff(self, semantic: np.ndarray, stuff_ids: Iterable[int], min_area: int,
                   confidence: np.ndarray | None = None, unsure: UnsureStuff | None = None) -> None:
        """Fill free pixels from a class map (same size as the canvas), one segment per stuff class.

        Score: mean per-pixel confidence over the region when given, else 1.0. With `unsure` and a
        confidence map, a region both small and unsure by its rule stays void as well.
        """
        free = self.id_map == 0
        for class_id in stuff_ids:
            region = (semantic == class_id) & free
            area = int(np.count_nonzero(region))
            if area == 0 or area < min_area:
                continue
            score = float(confidence[region].mean()) if confidence is not None else 1.0
            if unsure is not None and confidence is not None and unsure.drops(area, score):
                continue
            self.id_map[region] = self._next_id()
            self._record(class_id, score, False, area, _bbox(region))

    def segmentation(self) -> Segmentation:
        """The canvas as it is (its own resolution), with the tracked areas and boxes."""
        areas = np.asarray([0, *self._areas], np.int64)
        return self._table(self.id_map, areas, np.asarray(self._boxes, np.int32).reshape(-1, 4))

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
        if crop.shape == (geometry.src_h, geometry.src_w) and crop.shape == self.id_map.shape:
            return self.segmentation()  # the network saw the frame as it is: nothing to map
        source_map = geometry.map_to_source(self.id_map)
        n = len(self)
        # network rows/columns the resize samples, how often, and which one each source row/column is
        used_rows, row_of, row_repeats = np.unique(_nearest_source_index(crop.shape[0], geometry.src_h),
                                                   return_inverse=True, return_counts=True)
        used_cols, col_of, col_repeats = np.unique(_nearest_source_index(crop.shape[1], geometry.src_w),
                                                   return_inverse=True, return_counts=True)
        sampled = crop[used_rows][:, used_cols]  # what the source map is made of (skipped pixels left out)
        weights = np.outer(row_repeats, col_repeats).ravel()
        areas = np.rint(np.bincount(sampled.ravel(), weights, minlength=n + 1)[: n + 1]).astype(np.int64)
        if sampled.shape == self.id_map.shape and n:
            # a stretch that copies every network pixel (an upscale): a source box is the tracked
            # network box's first and last rows/columns mapped through the copies (row_of is sorted)
            net = np.asarray(self._boxes, np.int64).reshape(-1, 4)
            boxes = np.stack([np.searchsorted(col_of, net[:, 0], "left"), np.searchsorted(row_of, net[:, 1], "left"),
                              np.searchsorted(col_of, net[:, 2] - 1, "right"),
                              np.searchsorted(row_of, net[:, 3] - 1, "right")], axis=1).astype(np.int32)
            return self._table(source_map, areas, boxes)
        in_row = np.zeros((n + 1, sampled.shape[0]), bool)
        in_col = np.zeros((n + 1, sampled.shape[1]), bool)
        in_row[sampled, np.arange(sampled.shape[0])[:, None]] = True
        in_col[sampled, np.arange(sampled.shape[1])[None, :]] = True
        boxes = occupancy_boxes(in_row[:, row_of], in_col[:, col_of])[1:]  # source rows/columns
        return self._table(source_map, areas, boxes)

    def _table(self, source_map: np.ndarray, areas: np.ndarray, boxes: np.ndarray) -> Segmentation:
        """The Segmentation of a map given areas (n + 1,), void first, and boxes (n, 4); segments
        left empty (all their pixels overwritten or skipped by the resize) are dropped."""
        n = len(self)
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
                box: tuple[int, int, int, int]) -> None:
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


def classes_and_confidence(logits: np.ndarray, output_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel winning class (int32, the lowest id on ties, as argmax) and its softmax
    probability, from logits (C, H, W); DecoderError if the output `output_name` is not finite.

    The class comes from comparing each channel with the per-pixel maximum, which the
    probability needs anyway (base.first_index_of).
    Finiteness is checked on the probability map, C times smaller than the logits: a NaN logit,
    or an infinite winning one, makes its pixel's probability NaN (only a -inf loser, which
    changes nothing, goes through).
    """
    logits = logits.astype(np.float32, copy=False)
    top = logits.max(axis=0)
    total = np.zeros(top.shape, np.float32)
    term = np.empty(top.shape, np.float32)
    for channel in logits:  # one plane at a time, no (C, H, W) temporaries; OpenCV's exp is ~2x numpy's
        cv2.subtract(np.ascontiguousarray(channel), top, term)
        cv2.add(total, cv2.exp(term, term), total)
    confidence = np.reciprocal(total, out=total)
    require_finite(output_name, confidence)
    classes = first_index_of(logits, top, np.uint8 if logits.shape[0] <= 256 else np.int32)
    return classes.astype(np.int32), confidence
