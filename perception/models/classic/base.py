"""What every classic method shares: the engine-shaped face the pipeline drives, the one
label-map decoder, and the registry of methods (name -> "module:class", imported on first use).

A method is stateful (a background model remembers past frames), so the pipeline runs it
where it runs an engine: in one thread, frame after frame. Its outputs are a label map at
the card's working resolution (0 = void, k = segment k) and the class of each segment;
LabelDecoder maps them to source resolution and builds the same Segmentation a network gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import NamedTuple

import cv2
import numpy as np

from perception.core.errors import FrameError, ModelMismatchError
from perception.core.registry import Registry
from perception.core.segmentation import Segmentation, Segments, segment_stats
from perception.core.tensors import TensorSpec
from perception.models.card import ModelCard
from perception.models.errors import ModelCardError
from perception.models.preprocess import Geometry

LABELS, CLASSES = "labels", "classes"

class Labels(NamedTuple):
    """labels (H, W) uint16 at working resolution, 0 = void; classes[k - 1] is segment k's class id."""

    labels: np.ndarray
    classes: np.ndarray


class CameraMovingError(FrameError):
    """The motion method saw most of the frame change at once: the camera moved, not the objects."""


class ClassicMethod:
    """Base of the methods: looks like an Engine to the pipeline (inputs, outputs, infer, close)."""

    reuses_outputs = False  # every frame's label map is a fresh array
    stateful = False  # True: it learns from the frames it sees, so it serves one camera only

    def __init__(self, card: ModelCard) -> None:
        self.card = card
        self.name = f"classic:{card.method}"
        spec = card.input
        self.width, self.height = spec.width, spec.height
        self._inputs = (TensorSpec(spec.name, (1, spec.height, spec.width, 3), "uint8"),)
        self._outputs = (TensorSpec(LABELS, (spec.height, spec.width), "uint16"),
                         TensorSpec(CLASSES, ("segments",), "int32"))

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def segment(self, bgr: np.ndarray) -> Labels:
        """One BGR uint8 frame at working resolution -> its labels."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget what earlier frames taught (a new scene); stateless methods have nothing to forget."""

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensor = feeds[self._inputs[0].name]
        result = self.segment(tensor[0])
        return {LABELS: result.labels, CLASSES: result.classes}

    def close(self) -> None:
        """Nothing to release: OpenCV's models are plain memory."""

    def __enter__(self) -> ClassicMethod:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LabelDecoder:
    """Label map + segment classes -> Segmentation at source resolution (every classic method)."""

    def __init__(self, card: ModelCard) -> None:
        self.card = card
        top = max(c.id for c in card.classes) + 1
        self._is_thing = np.zeros(top, bool)
        for c in card.classes:
            self._is_thing[c.id] = c.thing

    def check(self, outputs: tuple[TensorSpec, ...]) -> None:
        names = {o.name for o in outputs}
        if not {LABELS, CLASSES} <= names:
            raise ModelMismatchError(f"a classic segmenter gives {sorted(names)}", f"it must give {LABELS!r} and "
                                     f"{CLASSES!r} (see perception.models.classic.base)")

    def decode(self, outputs: Mapping[str, np.ndarray], geometry: Geometry) -> Segmentation:
        labels, classes = outputs[LABELS], outputs[CLASSES]
        n = len(classes)
        scores, is_thing = np.ones(n, np.float32), self._is_thing[classes]
        upsampled = _upsampled(labels, n, geometry)
        if upsampled is None:
            return Segmentation.from_id_map(geometry.map_to_source(labels), classes, scores, is_thing)
        full, areas, boxes = upsampled
        if not (areas[1:] > 0).all():  # a segment lost in resampling: the generic path drops and renumbers
            return Segmentation.from_id_map(full, classes, scores, is_thing)
        segments = Segments(ids=np.arange(1, n + 1, dtype=np.uint32), class_ids=classes.astype(np.int32),
                            instance_ids=np.zeros(n, np.uint32), is_thing=is_thing, scores=scores,
                            bboxes=boxes[1:], areas=areas[1:])
        return Segmentation(full, segments)


def _upsampled(labels: np.ndarray, n: int, geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The label map at source size with its segments' exact areas and boxes, counted at working size.

    Nearest-neighbour upsampling repeats each map row and column a known number of times, so a
    segment's source area is the sum of those products over its map pixels and its box edges are
    where its first and past-last map column/row begin in the source: the segments table costs a
    pass over the small map instead of the big one (half of the motion method's time otherwise).
    None when the map is not smaller than the source (the generic path is as cheap there).
    """
    x0, y0, x1, y1 = geometry.content_box(*labels.shape)
    crop = np.ascontiguousarray(labels[y0:y1, x0:x1])
    h, w = crop.shape
    if h >= geometry.src_h or w >= geometry.src_w:
        return None
    full = cv2.resize(crop, (geometry.src_w, geometry.src_h), interpolation=cv2.INTER_NEAREST)
    cols, rows = _sampled(w, geometry.src_w), _sampled(h, geometry.src_h)
    weights = np.outer(np.bincount(rows, minlength=h), np.bincount(cols, minlength=w)).ravel()
    areas = np.bincount(crop.ravel(), weights=weights, minlength=n + 1)[: n + 1].round().astype(np.int64)
    _, boxes = segment_stats(crop, n)
    first_x = np.searchsorted(cols, np.arange(w + 1))  # the first source column that samples map column c
    first_y = np.searchsorted(rows, np.arange(h + 1))
    source_boxes = np.stack([first_x[boxes[:, 0]], first_y[boxes[:, 1]], first_x[boxes[:, 2]],
                             first_y[boxes[:, 3]]], axis=1).astype(np.int32)
    return full, areas, source_boxes


def _sampled(size: int, target: int) -> np.ndarray:
    """For each of `target` source pixels along an axis, the map pixel cv2.resize's nearest neighbour reads."""
    ramp = np.arange(size, dtype=np.float32)[None, :]
    return cv2.resize(ramp, (target, 1), interpolation=cv2.INTER_NEAREST)[0].astype(np.int64)


# name -> "module:Class"; Class(card: ModelCard) -> ClassicMethod
CLASSIC_METHODS: Registry[ClassicMethod] = Registry(
    "classic method", ClassicMethod, ModelCardError,
    {
        "motion": "perception.models.classic.motion:MotionSegmenter",
        "color": "perception.models.classic.color:ColorSegmenter",
        "region": "perception.models.classic.region:RegionSegmenter",
    },
    group="perception.classic",
)


def available_methods() -> list[str]:
    return CLASSIC_METHODS.names()


def open_classic(card: ModelCard) -> ClassicMethod:
    if card.method not in CLASSIC_METHODS:
        raise CLASSIC_METHODS.unknown(card.method, f" named by model card {card.path or card.name}")
    return CLASSIC_METHODS.create(card.method, card)
