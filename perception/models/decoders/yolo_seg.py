"""YOLO-seg (Ultralytics v8/11 export) decoding to the one Segmentation, at source resolution.

Raw export: output0 [1, 4 + nc + 32, N] holds per anchor (cx, cy, w, h) in input pixels,
nc class scores (sigmoid already applied) and 32 mask coefficients; output1 [1, 32, H/4, W/4]
holds the mask prototypes. Decoding: best class per anchor, confidence filter, a cap of
`max_candidates` (300) highest-scoring anchors, class-aware NMS keeping at most
`max_detections` (100), then per detection the mask logits (coefficients @ prototypes) sampled
at the source pixels inside its box (letterbox or stretch undone in the same step) and
thresholded at logit(`mask_threshold`), which is 0 for the default 0.5: the exporter's own mask
math (Ultralytics interpolates the logits and thresholds at 0; interpolating probabilities
instead moves every mask edge). The caps bound the work a bad model can cause: NMS is O(300^2) and at most
100 masks are built, whatever N is.

Instances are pasted by score through fusion.Canvas (higher score wins overlapping pixels;
an instance less than `overlap_threshold` visible is dropped). Without semantics the result
holds thing segments only; pixels of no instance stay void. With decoder_params `semantic`
naming a [1, C, H, W] logits (or integer class map) output, stuff classes of the card fill the
free pixels (`min_stuff_area` counted at source resolution): the "yolo_seg + semantic" panoptic
combination. Class k of the detector and channel k of the semantics are card class k.

NMS-free exports (Ultralytics `nms=False`, e.g. YOLO26's one-to-one head; `end2end`, detected
from the shape by default) give output0 [1, K, 6 + 32]: x1, y1, x2, y2, score, class, 32
coefficients per row, one row per object. Decoding then skips NMS: rows above the confidence
threshold, the `max_detections` best, masks as above.

`assembled = true` reads a graph folded by `perception fold --post`, which already did the
filter, cap, NMS and mask assembly: outputs boxes [M, 4] (xyxy input pixels), scores [M],
class_ids [M] and masks [M, H/4, W/4] (logits, `mask_logits = true` in the card it writes; graphs
folded before that hold probabilities and cards without the key read them as such).

Class names: Ultralytics writes them into the ONNX metadata (`names`, a Python dict literal);
classes_from_metadata() reads them for `perception inspect`'s card skeleton, and the card's
[[classes]] override them.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import cv2
import numpy as np

from perception.core.errors import ModelMismatchError
from perception.core.segmentation import Segmentation
from perception.core.tensors import TensorSpec
from perception.models.card import ClassInfo, ModelCard
from perception.models.decoders.base import decoder_params, require_finite
from perception.models.decoders.fusion import OVERLAP_THRESHOLD, Canvas, UnsureStuff, classes_and_confidence
from perception.models.decoders.nms import class_aware_nms, top_k
from perception.models.errors import DecoderError, ModelCardError
from perception.models.preprocess import Geometry

DEFAULTS: dict[str, Any] = {
    "output0": "output0",
    "protos": "output1",
    "conf_threshold": 0.25,
    "iou_threshold": 0.7,
    "max_candidates": 300,
    "max_detections": 100,
    "mask_threshold": 0.5,
    "overlap_threshold": OVERLAP_THRESHOLD,
    "min_area": 1,
    "semantic": "",
    "semantic_confidence": "",
    "min_stuff_area": 64,
    "unsure_stuff_area": 0,
    "unsure_stuff_confidence": 0.0,
    "assembled": False,
    "mask_logits": False,  # assembled masks are logits (perception fold writes true), else probabilities
    "end2end": "auto",
    "boxes": "boxes",
    "scores": "scores",
    "class_ids": "class_ids",
    "masks": "masks",
}

_MAX_NAMES_CHARS = 1 << 20


class YoloSegDecoder:
    def __init__(self, card: ModelCard) -> None:
        params = decoder_params(card, DEFAULTS)
        self.card_name = card.name
        self.output0 = str(params["output0"])
        self.protos_name = str(params["protos"])
        self.conf_threshold = float(params["conf_threshold"])
        self.iou_threshold = float(params["iou_threshold"])
        self.max_candidates = int(params["max_candidates"])
        self.max_detections = int(params["max_detections"])
        self.mask_threshold = float(params["mask_threshold"])
        if not 0.0 < self.mask_threshold < 1.0:
            raise DecoderError(f"model card {card.name!r}: mask_threshold {self.mask_threshold} is not a probability "
                               "strictly between 0 and 1", "the default is 0.5")
        self.logit_threshold = math.log(self.mask_threshold / (1.0 - self.mask_threshold))
        self.overlap_threshold = float(params["overlap_threshold"])
        self.min_area = int(params["min_area"])
        self.semantic_name = str(params["semantic"])
        self.semantic_confidence = str(params["semantic_confidence"])
        self.min_stuff_area = int(params["min_stuff_area"])
        self.unsure_stuff = UnsureStuff.from_params(params, card.name)
        self.assembled = bool(params["assembled"])
        self.mask_logits = bool(params["mask_logits"])
        end2end = params["end2end"]
        self.end2end: bool | None = None if end2end == "auto" else bool(end2end)
        self.names = {key: str(params[key]) for key in ("boxes", "scores", "class_ids", "masks")}
        if self.max_candidates < 1 or self.max_detections < 1:
            raise DecoderError(f"model card {card.name!r}: max_candidates and max_detections must be >= 1",
                               "the defaults are 300 and 100")
        self.card_ids = {c.id for c in card.classes}
        self.stuff_ids = sorted(c.id for c in card.classes if not c.thing)
        self.num_classes = 0
        self.num_coeffs = 0

    def model_classes(self, outputs: tuple[TensorSpec, ...]) -> int | None:
        by_name = {o.name: o for o in outputs}
        head, protos = by_name.get(self.output0), by_name.get(self.protos_name)
        if self.assembled or head is None or protos is None or len(head.shape) != 3 or len(protos.shape) != 4:
            return None
        nm, channels = protos.shape[1], head.shape[1]
        if not isinstance(nm, int) or not isinstance(channels, int) or head.shape[2] == 6 + nm:
            return None  # NMS-free rows carry the class id as a value
        detected = channels - 4 - nm
        if detected < 1:
            return None
        if not self.semantic_name:
            return detected
        semantic = by_name.get(self.semantic_name)  # stuff classes come from the semantic head
        if semantic is None or len(semantic.shape) != 4 or not isinstance(semantic.shape[1], int) \
                or semantic.shape[1] == 1:
            return None
        return max(detected, semantic.shape[1])

    def check(self, outputs: tuple[TensorSpec, ...]) -> None:
        by_name = {o.name: o for o in outputs}
        found = ", ".join(f"{o.name} {list(o.shape)}" for o in outputs) or "none"
        fix = "set decoder_params output0/protos in the card to the graph's outputs (perception inspect MODEL.onnx)"

        def spec(name: str, rank: int, what: str) -> TensorSpec:
            tensor = by_name.get(name)
            if tensor is None:
                raise ModelMismatchError(f"yolo_seg expects output {name!r} ({what}); the model has {found}", fix)
            if len(tensor.shape) != rank:
                raise ModelMismatchError(f"yolo_seg expects output {name!r} to be {what}, it is "
                                         f"{list(tensor.shape)}", fix)
            return tensor

        if self.assembled:
            spec(self.names["boxes"], 2, "[M, 4] boxes")
            spec(self.names["scores"], 1, "[M] scores")
            spec(self.names["class_ids"], 1, "[M] class ids")
            spec(self.names["masks"], 3, "[M, H/4, W/4] masks")
        else:
            head = spec(self.output0, 3, "[1, 4 + classes + 32, anchors]")
            protos = spec(self.protos_name, 4, "[1, 32, H/4, W/4] prototypes")
            nm, channels = protos.shape[1], head.shape[1]
            if self.end2end is None:  # auto: rows of 6 + 32 are the NMS-free layout
                self.end2end = isinstance(nm, int) and head.shape[2] == 6 + nm
            if self.end2end:
                if not isinstance(nm, int) or head.shape[2] != 6 + nm:
                    raise ModelMismatchError(f"yolo_seg end2end expects {self.output0} [1, detections, 6 + {nm}], "
                                             f"it is {list(head.shape)}", fix)
                self.num_coeffs = nm
            elif not isinstance(nm, int) or not isinstance(channels, int) or channels - 4 - nm < 1:
                raise ModelMismatchError(
                    f"yolo_seg cannot split {self.output0} {list(head.shape)} with {nm} mask coefficients "
                    f"into boxes, classes and coefficients (model outputs: {found})", fix)
            else:
                self.num_classes, self.num_coeffs = channels - 4 - nm, nm
                missing = sorted(set(range(self.num_classes)) - self.card_ids)
                if missing:
                    raise ModelMismatchError(
                        f"the model detects {self.num_classes} classes but card {self.card_name!r} lacks class ids "
                        f"{missing[:10]}{' ...' if len(missing) > 10 else ''}",
                        "list every detector class in [[classes]] (perception inspect writes them from the metadata)")
        if self.semantic_name:
            sem = spec(self.semantic_name, 4, "[1, C, H, W] semantic logits or [1, 1, H, W] class map")
            if self.stuff_ids and isinstance(sem.shape[1], int) and sem.shape[1] != 1 \
                    and sem.shape[1] <= self.stuff_ids[-1]:
                raise ModelMismatchError(f"semantic output {self.semantic_name!r} has {sem.shape[1]} classes but "
                                         f"the card has stuff class id {self.stuff_ids[-1]}",
                                         "make the card's stuff classes match the semantic channels")

    def decode(self, outputs: Mapping[str, np.ndarray], geometry: Geometry) -> Segmentation:
        if self.assembled:
            detections = self._assembled(outputs)
        elif self.end2end:
            detections = self._end2end(outputs)
        else:
            detections = self._raw(outputs)
        canvas = Canvas(geometry.src_h, geometry.src_w, max_segments=len(detections.scores) + len(self.stuff_ids))
        if len(detections.scores):
            self._paste(canvas, detections, geometry)
        if self.semantic_name:
            semantic, confidence = self._semantic(outputs, geometry)
            canvas.fill_stuff(semantic, self.stuff_ids, self.min_stuff_area, confidence, self.unsure_stuff)
        return canvas.segmentation()

    def _raw(self, outputs: Mapping[str, np.ndarray]) -> _Detections:
        pred = outputs[self.output0][0]
        protos = outputs[self.protos_name][0]
        nc = pred.shape[0] - 4 - protos.shape[0]
        if nc < 1:
            raise DecoderError(f"{self.output0} has {pred.shape[0]} rows, too few for {protos.shape[0]} mask "
                               "coefficients", "check the export; the card's output names may be swapped")
        class_scores = pred[4:4 + nc]
        require_finite(self.output0, class_scores)
        best = class_scores.max(axis=0)
        candidates = np.nonzero(best > self.conf_threshold)[0]
        if len(candidates) > self.max_candidates:
            candidates = candidates[top_k(best[candidates], self.max_candidates)]
        columns = pred[:, candidates]
        require_finite(self.output0, columns)
        classes = columns[4:4 + nc].argmax(axis=0)
        scores = best[candidates]
        cx, cy, half_w, half_h = columns[0], columns[1], columns[2] / 2, columns[3] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
        keep = class_aware_nms(boxes, scores, classes, self.iou_threshold, self.max_detections)
        coeffs = np.ascontiguousarray(columns[4 + nc:, keep].T, np.float32)
        return _Detections(boxes[keep], scores[keep], classes[keep], (protos.shape[1], protos.shape[2]),
                           self._prototype_probs(protos, coeffs))

    def _end2end(self, outputs: Mapping[str, np.ndarray]) -> _Detections:
        """NMS-free export (Ultralytics nms=False, YOLO26 one-to-one head): rows of x1, y1, x2, y2, score,
        class, coefficients; the model already picked one box per object."""
        rows = outputs[self.output0][0]
        protos = outputs[self.protos_name][0]
        scores = rows[:, 4]
        require_finite(self.output0, scores)
        candidates = np.nonzero(scores > self.conf_threshold)[0]
        candidates = candidates[top_k(scores[candidates], self.max_detections)]
        kept = rows[candidates]
        require_finite(self.output0, kept)
        classes = kept[:, 5].astype(np.int64)
        unknown = sorted(set(classes.tolist()) - self.card_ids)
        if unknown:
            raise DecoderError(f"the model detected class ids {unknown[:10]} that card {self.card_name!r} "
                               "does not list",
                               "list every detector class in [[classes]] (perception inspect writes them)")
        coeffs = np.ascontiguousarray(kept[:, 6:], np.float32)
        return _Detections(kept[:, :4], kept[:, 4], classes, (protos.shape[1], protos.shape[2]),
                           self._prototype_probs(protos, coeffs))

    def _prototype_probs(self, protos: np.ndarray, coeffs: np.ndarray) -> _ProbsOf:
        def probs_of(k: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            crop = protos[:, y0:y1, x0:x1].reshape(protos.shape[0], -1).astype(np.float32, copy=False)
            logits = coeffs[k] @ crop
            # only the prototype pixels a kept detection uses are checked (cheaper than the whole map)
            require_finite(self.protos_name, logits)
            return logits.reshape(y1 - y0, x1 - x0)

        return probs_of

    def _assembled(self, outputs: Mapping[str, np.ndarray]) -> _Detections:
        boxes = outputs[self.names["boxes"]].reshape(-1, 4)
        scores = outputs[self.names["scores"]].reshape(-1)
        classes = outputs[self.names["class_ids"]].reshape(-1).astype(np.int64)
        masks = outputs[self.names["masks"]]
        for key, array in (("boxes", boxes), ("scores", scores), ("masks", masks)):
            require_finite(self.names[key], array)
        if not len(boxes) == len(scores) == len(classes) == len(masks):
            raise DecoderError(f"folded outputs disagree in length: {len(boxes)} boxes, {len(scores)} scores, "
                               f"{len(classes)} classes, {len(masks)} masks", "re-run perception fold")
        keep = top_k(scores, self.max_detections)

        def probs_of(k: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            return np.asarray(masks[keep[k], y0:y1, x0:x1], np.float32)

        return _Detections(boxes[keep], scores[keep], classes[keep], (masks.shape[1], masks.shape[2]), probs_of,
                           logits=self.mask_logits)

    def _paste(self, canvas: Canvas, detections: _Detections, geometry: Geometry) -> None:
        """Sample each detection's mask at the source pixels inside its box, paste by score."""
        mh, mw = detections.mask_shape
        scores, classes = detections.scores, detections.classes
        # source pixel x (center x + 0.5) -> input x * scale + pad -> prototype index (center-aligned)
        ax = geometry.scale_x * mw / geometry.net_w
        ay = geometry.scale_y * mh / geometry.net_h
        bx = 0.5 * ax + geometry.pad_x * mw / geometry.net_w - 0.5
        by = 0.5 * ay + geometry.pad_y * mh / geometry.net_h - 0.5
        src_boxes = geometry.boxes_to_source(detections.boxes)
        # a pixel belongs to a box when its center lies inside: [ceil(x0 - .5), ceil(x1 - .5))
        pix = np.ceil(src_boxes - 0.5).astype(np.int64)
        for k in range(len(scores)):
            x0, y0, x1, y1 = (int(v) for v in pix[k])
            if x1 <= x0 or y1 <= y0:
                continue
            px0, px1 = _span(x0 * ax + bx, (x1 - 1) * ax + bx, mw)
            py0, py1 = _span(y0 * ay + by, (y1 - 1) * ay + by, mh)
            probs = detections.probs_of(k, py0, py1, px0, px1)
            warp = np.array([[ax, 0.0, x0 * ax + bx - px0], [0.0, ay, y0 * ay + by - py0]], np.float64)
            sampled = cv2.warpAffine(probs, warp, (x1 - x0, y1 - y0),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
            threshold = self.logit_threshold if detections.logits else self.mask_threshold
            canvas.paste_instance(sampled > threshold, x0, y0, int(classes[k]), float(scores[k]),
                                  overlap_threshold=self.overlap_threshold, min_area=self.min_area)

    def _semantic(self, outputs: Mapping[str, np.ndarray], geometry: Geometry) -> tuple[np.ndarray, np.ndarray | None]:
        raw = outputs[self.semantic_name][0]
        confidence: np.ndarray | None = None
        if np.issubdtype(raw.dtype, np.integer):
            semantic = raw.reshape(raw.shape[-2:]).astype(np.int32, copy=False)
            if self.semantic_confidence:
                confidence = outputs[self.semantic_confidence].reshape(semantic.shape)
                require_finite(self.semantic_confidence, confidence)
        else:
            semantic, confidence = classes_and_confidence(raw, self.semantic_name)
        semantic = geometry.map_to_source(semantic)
        if confidence is not None:
            confidence = geometry.map_to_source(confidence.astype(np.float32, copy=False))
        return semantic, confidence


_ProbsOf = Callable[[int, int, int, int, int], np.ndarray]


class _Detections(NamedTuple):
    """Kept detections, highest score first; probs_of(k, y0, y1, x0, x1) gives a crop of mask k's
    logits (or probabilities where `logits` is false: a folded graph's masks) at prototype resolution."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    mask_shape: tuple[int, int]
    probs_of: _ProbsOf
    logits: bool = True


def _span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Prototype indices [start, stop) that bilinear sampling between lo and hi touches."""
    start = min(max(math.floor(lo), 0), size - 1)
    stop = max(min(math.floor(hi) + 2, size), start + 1)
    return start, stop


def classes_from_metadata(metadata: Mapping[str, str], key: str = "names") -> tuple[ClassInfo, ...]:
    """Class names an exporter wrote into the ONNX metadata, e.g. "{0: 'person', 1: 'bicycle'}".

    Parsed with ast.literal_eval (literals only, never code). All are things: a detector's
    classes are countable objects. Empty when the key is absent.
    """
    raw = metadata.get(key)
    if raw is None:
        return ()
    if len(raw) > _MAX_NAMES_CHARS:
        raise ModelCardError(f"ONNX metadata {key!r} is {len(raw)} characters long", "list the classes in the card")
    try:
        names = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ModelCardError(f"ONNX metadata {key!r} is not a class list ({exc})",
                             "list the classes in the model card's [[classes]]") from exc
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not all(isinstance(k, int) and k >= 0 for k in names):
        raise ModelCardError(f"ONNX metadata {key!r} = {raw[:80]!r} is not {{id: name}}",
                             "list the classes in the model card's [[classes]]")
    return tuple(ClassInfo(int(k), str(v), True) for k, v in sorted(names.items()))


def merge_classes(from_model: Sequence[ClassInfo], from_card: Sequence[ClassInfo]) -> tuple[ClassInfo, ...]:
    """The model's classes with the card's entries (matched by id) taking precedence."""
    merged = {c.id: c for c in from_model}
    merged.update({c.id: c for c in from_card})
    return tuple(merged[k] for k in sorted(merged))
