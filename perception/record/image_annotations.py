"""Segmentation results as `foxglove.ImageAnnotations` (JSON): instance contours plus class labels.

Foxglove's Image panel draws these over the camera topic whose header stamp matches the
annotation timestamp. JSON keeps this channel readable by any tool; the schema below is
written from Foxglove's published field list (timestamp, circles, points, texts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from perception.core.segmentation import Segmentation

SCHEMA_NAME = "foxglove.ImageAnnotations"
LINE_LOOP = 2  # foxglove.PointsAnnotationType: closed polygon

_TIME = {"type": "object", "properties": {"sec": {"type": "integer", "minimum": 0},
                                          "nsec": {"type": "integer", "minimum": 0, "maximum": 999_999_999}}}
_POINT = {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"]}
_COLOR = {"type": "object", "properties": {c: {"type": "number", "minimum": 0, "maximum": 1} for c in "rgba"}}
SCHEMA: dict[str, Any] = {
    "title": SCHEMA_NAME,
    "description": "Array of annotations for a 2D image",
    "type": "object",
    "properties": {
        "timestamp": _TIME,
        "circles": {"type": "array", "items": {"type": "object", "properties": {
            "timestamp": _TIME, "position": _POINT, "diameter": {"type": "number"},
            "thickness": {"type": "number"}, "fill_color": _COLOR, "outline_color": _COLOR}}},
        "points": {"type": "array", "items": {"type": "object", "properties": {
            "timestamp": _TIME, "type": {"type": "integer", "minimum": 0, "maximum": 4},
            "points": {"type": "array", "items": _POINT}, "outline_color": _COLOR,
            "outline_colors": {"type": "array", "items": _COLOR}, "fill_color": _COLOR,
            "thickness": {"type": "number"}}}},
        "texts": {"type": "array", "items": {"type": "object", "properties": {
            "timestamp": _TIME, "position": _POINT, "text": {"type": "string"}, "font_size": {"type": "number"},
            "text_color": _COLOR, "background_color": _COLOR}}},
    },
}
SCHEMA_BYTES = json.dumps(SCHEMA, separators=(",", ":")).encode()


def _time(stamp_ns: int) -> dict[str, int]:
    sec, nsec = divmod(max(0, stamp_ns), 1_000_000_000)
    return {"sec": sec, "nsec": nsec}


def class_color(class_id: int) -> tuple[float, float, float]:
    """A stable, well-spread color per class (golden-angle hue walk), RGB in 0..1."""
    hue = (class_id * 0.618033988749895) % 1.0
    hsv = np.array([[[hue * 180, 200, 255]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] / 255.0
    return float(r), float(g), float(b)


def _rgba(rgb: tuple[float, float, float], alpha: float) -> dict[str, float]:
    return {"r": rgb[0], "g": rgb[1], "b": rgb[2], "a": alpha}


def class_name(class_names: Sequence[str], class_id: int) -> str:
    return class_names[class_id] if 0 <= class_id < len(class_names) else f"class{class_id}"


def instance_contours(segmentation: Segmentation, index: int, min_points: int = 3) -> list[np.ndarray]:
    """Outer contours (N, 2) int of one segment, found inside its bbox only (cost ~ bbox, not image)."""
    x0, y0, x1, y1 = (int(v) for v in segmentation.segments.bboxes[index])
    if x1 <= x0 or y1 <= y0:
        return []
    crop = segmentation.id_map[y0:y1, x0:x1] == segmentation.segments.ids[index]
    contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    offset = np.array([x0, y0])
    return [c.reshape(-1, 2) + offset for c in contours if len(c) >= min_points]


def image_annotations(stamp_ns: int, segmentation: Segmentation, class_names: Sequence[str]) -> dict[str, Any]:
    """One ImageAnnotations message: a filled outline per thing contour and a label per thing."""
    segments = segmentation.segments
    points: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    stamp = _time(stamp_ns)
    for i in np.flatnonzero(segments.is_thing):
        class_id = int(segments.class_ids[i])
        rgb = class_color(class_id)
        for contour in instance_contours(segmentation, int(i)):
            points.append({
                "timestamp": stamp, "type": LINE_LOOP,
                "points": [{"x": float(x), "y": float(y)} for x, y in contour.tolist()],
                "outline_color": _rgba(rgb, 1.0), "outline_colors": [], "fill_color": _rgba(rgb, 0.3),
                "thickness": 2.0,
            })
        instance = int(segments.instance_ids[i])
        label = class_name(class_names, class_id) + (f" #{instance}" if instance else "")
        texts.append({
            "timestamp": stamp,
            "position": {"x": float(segments.bboxes[i, 0]), "y": float(max(int(segments.bboxes[i, 1]), 12))},
            "text": f"{label} {float(segments.scores[i]):.2f}", "font_size": 12.0,
            "text_color": _rgba((1.0, 1.0, 1.0), 1.0), "background_color": _rgba(rgb, 0.7),
        })
    return {"timestamp": stamp, "circles": [], "points": points, "texts": texts}


def encode(stamp_ns: int, segmentation: Segmentation, class_names: Sequence[str]) -> bytes:
    return json.dumps(image_annotations(stamp_ns, segmentation, class_names), separators=(",", ":")).encode()
