"""Semantic-only models: one stuff segment per class present (logits or an argmax map).

Accepted outputs (name in decoder_params `output`, default: the model's first output):
- float logits [1, C, H, W]: argmax per pixel, score = mean winning-class probability;
- integer class map [1, H, W] or [1, 1, H, W] (an exporter's ArgMax, or `perception fold
  --post`): score = mean of the optional `confidence` output [1, 1, H, W], else 1.0.

A semantic model cannot tell two touching cars apart, so every class, including classes the
card flags as things, becomes ONE segment covering all its pixels, with is_thing = False
(like a COCO "crowd" region): planners must not count objects from it. Classes with fewer
than `min_area` pixels (network resolution) are left void, as are class ids the card does
not list. Maps at a stride of the input are upsampled by nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from perception.core.errors import ModelMismatchError
from perception.core.segmentation import Segmentation
from perception.core.tensors import TensorSpec
from perception.models.card import ModelCard
from perception.models.decoders.base import decoder_params, require_finite
from perception.models.decoders.fusion import Canvas, UnsureStuff, classes_and_confidence
from perception.models.errors import DecoderError
from perception.models.preprocess import Geometry

DEFAULTS: dict[str, Any] = {
    "output": "",
    "confidence": "",
    "min_area": 64,
    "unsure_stuff_area": 0,
    "unsure_stuff_confidence": 0.0,
}

_INT_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "uint16", "uint32")


class SemanticDecoder:
    def __init__(self, card: ModelCard) -> None:
        params = decoder_params(card, DEFAULTS)
        self.output_name = str(params["output"])
        self.confidence_name = str(params["confidence"])
        self.min_area = int(params["min_area"])
        self.unsure = UnsureStuff.from_params(params, card.name)
        self.class_ids = sorted(c.id for c in card.classes)
        self.num_classes = self.class_ids[-1] + 1
        self.card_name = card.name
        self._argmax: bool | None = None

    def model_classes(self, outputs: tuple[TensorSpec, ...]) -> int | None:
        spec = {o.name: o for o in outputs}.get(self.output_name) if self.output_name else (
            outputs[0] if outputs else None)
        if spec is None or spec.dtype not in ("float32", "float16") or len(spec.shape) != 4:
            return None  # a class map's values are not known before it runs
        channels = spec.shape[1]
        return channels if isinstance(channels, int) else None

    def check(self, outputs: tuple[TensorSpec, ...]) -> None:
        by_name = {o.name: o for o in outputs}
        fix = "set decoder_params output = \"<name>\" in the model card (see perception inspect MODEL.onnx)"
        if not self.output_name:
            if not outputs:
                raise ModelMismatchError("model has no outputs", "export the model with its segmentation output")
            self.output_name = outputs[0].name
        spec = by_name.get(self.output_name)
        if spec is None:
            raise ModelMismatchError(f"model has no output {self.output_name!r} (it has {sorted(by_name)})", fix)
        if spec.dtype in _INT_DTYPES:
            extra_channels = len(spec.shape) == 4 and isinstance(spec.shape[1], int) and spec.shape[1] != 1
            if len(spec.shape) not in (3, 4) or extra_channels:
                raise ModelMismatchError(
                    f"integer output {self.output_name!r} has shape {spec.shape}, expected a class map "
                    "[1, H, W] or [1, 1, H, W]", fix)
            self._argmax = True
        elif spec.dtype in ("float32", "float16"):
            if len(spec.shape) != 4:
                raise ModelMismatchError(
                    f"output {self.output_name!r} has shape {spec.shape}, expected logits [1, C, H, W]", fix)
            channels = spec.shape[1]
            if isinstance(channels, int) and channels < self.num_classes:
                raise ModelMismatchError(
                    f"output {self.output_name!r} has {channels} classes but the card lists class id "
                    f"{self.num_classes - 1}", "make the card's [[classes]] match the model's classes")
            self._argmax = False
        else:
            raise ModelMismatchError(f"output {self.output_name!r} is {spec.dtype}, expected float logits or "
                                     "an integer class map", fix)
        if self.confidence_name and self.confidence_name not in by_name:
            raise ModelMismatchError(f"model has no output {self.confidence_name!r} (it has {sorted(by_name)})",
                                     "remove decoder_params confidence or name an existing output")

    def decode(self, outputs: Mapping[str, np.ndarray], geometry: Geometry) -> Segmentation:
        if self._argmax is None:
            raise DecoderError(f"semantic decoder of {self.card_name!r} used before check()",
                               "open models through Pipeline, which checks the outputs first")
        raw = outputs[self.output_name]
        confidence: np.ndarray | None = None
        semantic: np.ndarray
        if self._argmax:
            semantic = raw.reshape(raw.shape[-2:]).astype(np.int32, copy=False)
            if self.confidence_name:
                confidence = outputs[self.confidence_name].reshape(semantic.shape)
                require_finite(self.confidence_name, confidence)
        else:
            logits = raw[0]
            semantic, confidence = classes_and_confidence(logits, self.output_name)
        canvas = Canvas(int(semantic.shape[0]), int(semantic.shape[-1]), max_segments=len(self.class_ids))
        canvas.fill_stuff(semantic, self.class_ids, self.min_area, confidence, self.unsure)
        return canvas.to_source(geometry)
