"""Panoptic-DeepLab decoding: semantic argmax, center NMS, grouping by offsets, stuff fill.

Outputs read (names set in the card's decoder_params, defaults shown): semantic_logits
[1, C, H, W], center_heatmap [1, 1, H, W] (after sigmoid), offsets [1, 2, H, W] as (dy, dx)
in input pixels. All three at the network input size or a common integer stride of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from perception.inference.engine import TensorSpec
from perception.inference.errors import ModelMismatchError
from perception.models.card import ModelCard
from perception.models.decoders.base import require_finite
from perception.models.preprocess import Geometry
from perception.models.segmentation import Segmentation

DEFAULTS: dict[str, Any] = {
    "semantic": "semantic_logits",
    "center": "center_heatmap",
    "offsets": "offsets",
    "center_threshold": 0.1,
    "nms_kernel": 7,
    "top_k": 100,
    "min_stuff_area": 64,
    "min_thing_area": 10,
}


class PanopticDeepLabDecoder:
    def __init__(self, card: ModelCard) -> None:
        params = {**DEFAULTS, **card.decoder_params}
        self.semantic_name = str(params["semantic"])
        self.center_name = str(params["center"])
        self.offsets_name = str(params["offsets"])
        self.threshold = float(params["center_threshold"])
        self.kernel = int(params["nms_kernel"])
        self.top_k = int(params["top_k"])
        self.min_stuff_area = int(params["min_stuff_area"])
        self.min_thing_area = int(params["min_thing_area"])
        self.num_classes = max(c.id for c in card.classes) + 1
        self.thing_lut = np.zeros(self.num_classes, bool)
        for c in card.classes:
            self.thing_lut[c.id] = c.thing
        self.stuff_ids = [c.id for c in card.classes if not c.thing]
        self._dilate_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (self.kernel, self.kernel))

    def check(self, outputs: tuple[TensorSpec, ...]) -> None:
        by_name = {o.name: o for o in outputs}
        fix = "set decoder_params semantic/center/offsets in the model card to the graph's output names"
        for name, channels in ((self.semantic_name, self.num_classes), (self.center_name, 1),
                               (self.offsets_name, 2)):
            spec = by_name.get(name)
            if spec is None:
                raise ModelMismatchError(f"model has no output {name!r} (it has {sorted(by_name)})", fix)
            if len(spec.shape) != 4:
                raise ModelMismatchError(f"output {name!r} has shape {spec.shape}, expected [1, C, H, W]", fix)
            if isinstance(spec.shape[1], int) and spec.shape[1] != channels:
                raise ModelMismatchError(
                    f"output {name!r} has {spec.shape[1]} channels, expected {channels}",
                    "make the card's [[classes]] match the model's semantic classes")

    def decode(self, outputs: Mapping[str, np.ndarray], geometry: Geometry) -> Segmentation:
        logits = outputs[self.semantic_name][0]
        heat = outputs[self.center_name][0, 0]
        offsets = outputs[self.offsets_name][0]
        for name, array in ((self.semantic_name, logits), (self.center_name, heat), (self.offsets_name, offsets)):
            require_finite(name, array)
        semantic = logits.argmax(axis=0).astype(np.int32)
        confidence = _max_softmax(logits)
        return self.decode_heads(semantic, heat, offsets, geometry, confidence)

    def decode_heads(self, semantic: np.ndarray, heat: np.ndarray, offsets: np.ndarray,
                     geometry: Geometry, confidence: np.ndarray | None = None) -> Segmentation:
        """Decode from argmaxed semantics (also used with oracle heads built from ground truth)."""
        h, w = semantic.shape
        thing_mask = self.thing_lut[np.clip(semantic, 0, self.num_classes - 1)]
        centers, center_scores = self._find_centers(heat.astype(np.float32, copy=False))
        id_map = np.zeros((h, w), np.uint32)
        class_ids: list[int] = []
        scores: list[float] = []
        things: list[bool] = []
        if len(centers) and thing_mask.any():
            ys, xs = np.nonzero(thing_mask)
            target_y = ys + offsets[0, ys, xs]
            target_x = xs + offsets[1, ys, xs]
            d2 = (target_y[None, :] - centers[:, 0:1]) ** 2 + (target_x[None, :] - centers[:, 1:2]) ** 2
            nearest = d2.argmin(axis=0)
            pixel_class = semantic[ys, xs]
            votes = np.bincount(nearest * self.num_classes + pixel_class,
                                minlength=len(centers) * self.num_classes).reshape(len(centers), -1)
            areas = votes.sum(axis=1)
            majority = votes.argmax(axis=1)
            new_id = np.zeros(len(centers), np.uint32)
            for k in np.nonzero(areas >= self.min_thing_area)[0]:
                class_ids.append(int(majority[k]))
                scores.append(float(center_scores[k]))
                things.append(True)
                new_id[k] = len(class_ids)
            id_map[ys, xs] = new_id[nearest]
        for class_id in self.stuff_ids:
            region = semantic == class_id
            area = int(region.sum())
            if area < self.min_stuff_area:
                continue
            class_ids.append(class_id)
            scores.append(float(confidence[region].mean()) if confidence is not None else 1.0)
            things.append(False)
            id_map[region] = len(class_ids)
        source_map = geometry.map_to_source(id_map)
        return Segmentation.from_id_map(source_map, np.array(class_ids, np.int32),
                                        np.array(scores, np.float32), np.array(things, bool))

    def _find_centers(self, heat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pooled = cv2.dilate(heat, self._dilate_kernel)
        peaks = (heat == pooled) & (heat > self.threshold)
        ys, xs = np.nonzero(peaks)
        values = heat[ys, xs]
        if len(values) > self.top_k:
            keep = np.argpartition(-values, self.top_k)[: self.top_k]
            ys, xs, values = ys[keep], xs[keep], values[keep]
        order = np.argsort(-values, kind="stable")
        return np.stack([ys[order], xs[order]], axis=1).astype(np.float32), values[order]


def _max_softmax(logits: np.ndarray) -> np.ndarray:
    """Per-pixel probability of the winning class."""
    top = logits.max(axis=0)
    return (1.0 / np.exp(logits - top).sum(axis=0)).astype(np.float32)
