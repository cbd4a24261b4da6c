"""Panoptic-DeepLab decoding: semantic argmax, center NMS, grouping by offsets, stuff fill.

Outputs read (names set in the card's decoder_params, defaults shown): semantic_logits
[1, C, H, W], center_heatmap [1, 1, H, W] (after sigmoid), offsets [1, 2, H, W] as (dy, dx)
in input pixels. All three at the network input size or a common integer stride of it.

A graph folded by `perception fold --post` does the argmax and the center NMS/top-k itself;
its card then sets `semantic_argmax = true` (semantic output is an integer class map
[1, 1, H, W], with `confidence` naming the [1, 1, H, W] winning-class probability) and
`centers_folded = true` (outputs `center_scores` [1, K] and `center_indices` [1, K], flat
y * W + x indices of the peaks, highest first, non-peaks scored 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from perception.core.errors import ModelMismatchError
from perception.core.segmentation import Segmentation
from perception.core.tensors import TensorSpec
from perception.models.card import ModelCard
from perception.models.decoders.base import decoder_params, first_index_of, require_finite
from perception.models.decoders.fusion import Canvas, UnsureStuff, classes_and_confidence
from perception.models.decoders.nms import center_peaks, centers_from_flat
from perception.models.errors import DecoderError
from perception.models.preprocess import Geometry

DEFAULTS: dict[str, Any] = {
    "semantic": "semantic_logits",
    "center": "center_heatmap",
    "offsets": "offsets",
    "center_threshold": 0.1,
    "nms_kernel": 7,
    "top_k": 100,
    "min_stuff_area": 64,
    "unsure_stuff_area": 0,
    "unsure_stuff_confidence": 0.0,
    "min_thing_area": 10,
    "class_aware_grouping": False,
    "max_center_distance": 0.0,
    "min_thing_confidence": 0.0,
    "min_sure_fraction": 0.0,
    "sure_confidence": 0.9,
    "centers_on_things": False,
    "grouping_size_exponent": 0.0,
    "semantic_argmax": False,
    "confidence": "",
    "centers_folded": False,
    "center_scores": "center_scores",
    "center_indices": "center_indices",
}


# a class id no class has: neither thing nor stuff, so the pixel stays void
VOID_CLASS = -1


class PanopticDeepLabDecoder:
    def __init__(self, card: ModelCard) -> None:
        params = decoder_params(card, DEFAULTS)
        self.semantic_name = str(params["semantic"])
        self.center_name = str(params["center"])
        self.offsets_name = str(params["offsets"])
        self.threshold = float(params["center_threshold"])
        self.kernel = int(params["nms_kernel"])
        self.top_k = int(params["top_k"])
        self.min_stuff_area = int(params["min_stuff_area"])
        # small stuff regions the model is unsure of stay void (see fusion.UnsureStuff)
        self.unsure_stuff = UnsureStuff.from_params(params, card.name)
        self.min_thing_area = int(params["min_thing_area"])
        # a thing pixel joins only a center of its own class, and none farther than this (0 = any)
        self.class_aware = bool(params["class_aware_grouping"])
        self.max_center_distance = float(params["max_center_distance"])
        # thing pixels the model is less sure of than this are left void: a small thing's blob
        # spills past its outline, and the spill costs it its match (IoU <= 0.5)
        self.min_thing_confidence = float(params["min_thing_confidence"])
        # an instance needs this share of its pixels at sure_confidence or above: a blob the model
        # is lukewarm about everywhere is mostly a false positive (a shadow, a pole, a far crowd)
        self.min_sure_fraction = float(params["min_sure_fraction"])
        self.sure_confidence = float(params["sure_confidence"])
        # centre NMS sees the heatmap only on (sure) thing pixels: a peak on road or on an unsure
        # pixel claims nothing under class-aware grouping, yet it suppresses a real peak beside it
        self.centers_on_things = bool(params["centers_on_things"])
        # > 0: pixels are grouped again by distance^2 / area^exponent, areas from a first pass;
        # offsets miss by more the bigger the instance, and the plain nearest-centre rule lets a
        # small car take its big neighbour's far pixels
        self.size_exponent = float(params["grouping_size_exponent"])
        self.semantic_argmax = bool(params["semantic_argmax"])
        self.confidence_name = str(params["confidence"])
        self.centers_folded = bool(params["centers_folded"])
        self.center_scores_name = str(params["center_scores"])
        self.center_indices_name = str(params["center_indices"])
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise DecoderError(f"model card {card.name!r}: nms_kernel = {self.kernel} is not a positive odd number",
                               "use an odd max-pool size such as 7 or 11")
        self.num_classes = max(c.id for c in card.classes) + 1
        self.thing_lut = np.zeros(self.num_classes, bool)
        for c in card.classes:
            self.thing_lut[c.id] = c.thing
        self.stuff_ids = [c.id for c in card.classes if not c.thing]
        if not 0.0 <= self.min_thing_confidence < 1.0:
            raise DecoderError(f"model card {card.name!r}: min_thing_confidence = {self.min_thing_confidence} "
                               "is not in [0, 1)", "use a class probability such as 0.65, or 0 for none")
        if not 0.0 <= self.size_exponent <= 2.0:
            raise DecoderError(f"model card {card.name!r}: grouping_size_exponent = {self.size_exponent} "
                               "is not in [0, 2]",
                               "use 0.5 (the shipped card's), or 0 for plain nearest-centre grouping")
        if not 0.0 <= self.min_sure_fraction <= 1.0 or not 0.0 < self.sure_confidence <= 1.0:
            raise DecoderError(f"model card {card.name!r}: min_sure_fraction = {self.min_sure_fraction}, "
                               f"sure_confidence = {self.sure_confidence} (need a share in [0, 1] and a "
                               "probability in (0, 1])",
                               "use min_sure_fraction = 0.2 with sure_confidence = 0.9, or min_sure_fraction = 0 "
                               "for none")
        for rule in ("min_thing_confidence", "min_sure_fraction"):
            if getattr(self, rule) > 0 and self.semantic_argmax and not self.confidence_name:
                raise DecoderError(f"model card {card.name!r}: {rule} needs the class probability, and "
                                   "this folded graph gives only the class map",
                                   "name the graph's probability output in decoder_params confidence, or set "
                                   f"{rule} = 0")

    def model_classes(self, outputs: tuple[TensorSpec, ...]) -> int | None:
        semantic = {o.name: o for o in outputs}.get(self.semantic_name)
        if self.semantic_argmax or semantic is None or len(semantic.shape) != 4:
            return None
        channels = semantic.shape[1]
        return channels if isinstance(channels, int) else None

    def check(self, outputs: tuple[TensorSpec, ...]) -> None:
        by_name = {o.name: o for o in outputs}
        fix = "set decoder_params semantic/center/offsets in the model card to the graph's output names"
        expected: list[tuple[str, int]] = [
            (self.semantic_name, 1 if self.semantic_argmax else self.num_classes), (self.offsets_name, 2)]
        if self.centers_folded:
            expected += [(self.center_scores_name, -1), (self.center_indices_name, -1)]
        else:
            expected.append((self.center_name, 1))
        if self.confidence_name:
            expected.append((self.confidence_name, 1))
        for name, channels in expected:
            spec = by_name.get(name)
            if spec is None:
                raise ModelMismatchError(f"model has no output {name!r} (it has {sorted(by_name)})", fix)
            rank = 2 if channels < 0 else 4
            if len(spec.shape) != rank:
                raise ModelMismatchError(
                    f"output {name!r} has shape {spec.shape}, expected {'[1, K]' if rank == 2 else '[1, C, H, W]'}",
                    fix)
            if channels > 0 and isinstance(spec.shape[1], int) and spec.shape[1] != channels:
                raise ModelMismatchError(
                    f"output {name!r} has {spec.shape[1]} channels, expected {channels}",
                    "make the card's [[classes]] match the model's semantic classes")

    def decode(self, outputs: Mapping[str, np.ndarray], geometry: Geometry) -> Segmentation:
        raw = outputs[self.semantic_name][0]
        offsets = outputs[self.offsets_name][0]
        require_finite(self.offsets_name, offsets)
        if self.semantic_argmax:
            semantic = raw[0].astype(np.int32, copy=False)
            if semantic.size and (int(semantic.min()) < 0 or int(semantic.max()) >= self.num_classes):
                raise DecoderError(f"engine output {self.semantic_name!r} has class ids outside "
                                   f"0..{self.num_classes - 1} ({int(semantic.min())}..{int(semantic.max())})",
                                   "make the card's [[classes]] cover every class the model predicts")
            confidence = None
            if self.confidence_name:
                confidence = outputs[self.confidence_name][0, 0]
                require_finite(self.confidence_name, confidence)
        else:
            semantic, confidence = classes_and_confidence(raw, self.semantic_name)
        if self.centers_folded:
            scores = outputs[self.center_scores_name].reshape(-1)
            require_finite(self.center_scores_name, scores)
            centers = centers_from_flat(outputs[self.center_indices_name].reshape(-1), scores,
                                        semantic.shape[1], self.threshold)
            things, unsure = self._sure_things(semantic, confidence)
            if self.centers_on_things:
                # `perception fold --post` masks the heatmap in the graph; this also holds the rule
                # for a graph folded without it (its suppressed peaks cannot come back, though)
                points, center_scores = centers
                on = things[points[:, 0].astype(np.int64), points[:, 1].astype(np.int64)]
                centers = (points[on], center_scores[on])
            return self._group(semantic, things, unsure, centers, offsets, geometry, confidence)
        heat = outputs[self.center_name][0, 0]
        require_finite(self.center_name, heat)
        return self.decode_heads(semantic, heat, offsets, geometry, confidence)

    def decode_heads(self, semantic: np.ndarray, heat: np.ndarray, offsets: np.ndarray,
                     geometry: Geometry, confidence: np.ndarray | None = None) -> Segmentation:
        """Decode from argmaxed semantics (also used with oracle heads built from ground truth)."""
        things, unsure = self._sure_things(semantic, confidence)
        heat = heat.astype(np.float32, copy=False)
        if self.centers_on_things:
            heat = np.where(things, heat, np.float32(0.0))
        centers = center_peaks(heat, self.kernel, self.threshold, self.top_k)
        return self._group(semantic, things, unsure, centers, offsets, geometry, confidence)

    def _sure_things(self, semantic: np.ndarray,
                     confidence: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Thing pixels sure enough to group, and the unsure ones (None without the rule)."""
        thing_mask = np.take(self.thing_lut, semantic, mode="clip")
        unsure = None
        if self.min_thing_confidence > 0 and confidence is not None:
            # unsure thing pixels are void: they join no instance, and stuff never fills thing classes
            unsure = thing_mask & (confidence < self.min_thing_confidence)
            thing_mask &= ~unsure
        return thing_mask, unsure

    def _group(self, semantic: np.ndarray, thing_mask: np.ndarray, unsure: np.ndarray | None,
               centers: tuple[np.ndarray, np.ndarray], offsets: np.ndarray, geometry: Geometry,
               confidence: np.ndarray | None) -> Segmentation:
        """Assign sure thing pixels to the nearest center after their offset; stuff from the semantics."""
        points, center_scores = centers
        h, w = semantic.shape
        canvas = Canvas(h, w, max_segments=len(points) + len(self.stuff_ids))
        if len(points) and thing_mask.any():
            flat = np.flatnonzero(thing_mask)
            ys, xs = np.divmod(flat, w)
            target = offsets.reshape(2, -1).take(flat, axis=1).astype(np.float32)  # where each pixel points
            target[0] += ys
            target[1] += xs
            pixel_class = semantic.ravel()[flat]
            max_d2 = self.max_center_distance ** 2 if self.max_center_distance > 0 else np.inf
            if self.class_aware:
                rows = points[:, 0].astype(np.int64).clip(0, h - 1)
                cols = points[:, 1].astype(np.int64).clip(0, w - 1)
                point_class = semantic[rows, cols]
                if unsure is not None:
                    point_class = np.where(unsure[rows, cols], VOID_CLASS, point_class)
                nearest, nearest_d2 = _nearest_of_own_class(target, pixel_class, points, point_class,
                                                             self.size_exponent, max_d2)
            else:
                nearest, nearest_d2 = _nearest(target, points, self.size_exponent, max_d2)
            # pixels no center claims stay void rather than corrupting a neighbour's mask
            claimed = np.isfinite(nearest_d2) & (nearest_d2 <= max_d2)
            votes = np.bincount(nearest[claimed] * self.num_classes + pixel_class[claimed],
                                minlength=len(points) * self.num_classes).reshape(len(points), -1)
            areas = votes.sum(axis=1)
            majority = votes.argmax(axis=1)
            enough = areas >= self.min_thing_area
            if self.min_sure_fraction > 0 and confidence is not None:
                sure = confidence.ravel()[flat[claimed]] >= self.sure_confidence
                sure_areas = np.bincount(nearest[claimed], weights=sure, minlength=len(points))
                enough &= sure_areas >= self.min_sure_fraction * areas
            kept = np.nonzero(enough)[0]
            label = np.full(len(points), -1, np.int64)
            label[kept] = np.arange(len(kept))
            pixel_label = np.where(claimed, label[nearest], -1)
            canvas.paste_labels(ys, xs, pixel_label,
                                [(int(majority[k]), float(center_scores[k])) for k in kept])
        canvas.fill_stuff(semantic, self.stuff_ids, self.min_stuff_area, confidence, self.unsure_stuff)
        return canvas.to_source(geometry)


def _nearest(target: np.ndarray, points: np.ndarray, size_exponent: float = 0.0,
             max_d2: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """For pixels' offset targets (2, N): index of the nearest point (M, 2) and its squared distance.

    With size_exponent > 0, "nearest" is the least d2 / area^size_exponent, each point's area
    being the pixels it is nearest to (within max_d2) by plain distance."""
    d2 = target[0][None, :] - points[:, 0:1]
    d2 *= d2
    dx = target[1][None, :] - points[:, 1:2]
    d2 += np.multiply(dx, dx, out=dx)
    nearest_d2 = d2.min(axis=0)
    nearest = first_index_of(d2, nearest_d2, np.int32)
    if size_exponent <= 0 or len(points) < 2:
        return nearest, nearest_d2
    areas = np.bincount(nearest[nearest_d2 <= max_d2], minlength=len(points))
    scale = np.maximum(areas, 1).astype(np.float32) ** np.float32(-size_exponent)
    d2 *= scale[:, None]  # in place: the plain distance is the scaled one divided back
    scaled = d2.min(axis=0)
    nearest = first_index_of(d2, scaled, np.int32)
    return nearest, scaled / scale[nearest]


def _nearest_of_own_class(target: np.ndarray, pixel_class: np.ndarray, points: np.ndarray,
                          point_class: np.ndarray, size_exponent: float = 0.0,
                          max_d2: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """_nearest among the points of each pixel's own class (distance inf where its class has none).

    One distance matrix per class instead of one masked (M, N) matrix: a third of the work with
    three thing classes."""
    nearest = np.zeros(len(pixel_class), np.int64)
    nearest_d2 = np.full(len(pixel_class), np.inf)
    for cls in np.unique(point_class).tolist():
        pixels = np.flatnonzero(pixel_class == cls)  # indices: take() is ~6x a boolean column gather
        if not len(pixels):
            continue
        own = np.nonzero(point_class == cls)[0]
        index, d2 = _nearest(target.take(pixels, axis=1), points[own], size_exponent, max_d2)
        nearest[pixels] = own[index]
        nearest_d2[pixels] = d2
    return nearest, nearest_d2
