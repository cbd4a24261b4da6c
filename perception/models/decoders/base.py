"""Decoder protocol and registry (perception.core.registry: by name, imported on first use)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from perception.core.registry import Registry
from perception.core.segmentation import Segmentation
from perception.core.tensors import TensorSpec
from perception.models.card import ModelCard
from perception.models.errors import DecoderError
from perception.models.preprocess import Geometry


@runtime_checkable
class Decoder(Protocol):
    """Built from a model card; checks the engine's outputs once, then decodes every frame."""

    def check(self, outputs: tuple[TensorSpec, ...]) -> None:
        """Raise ModelMismatchError if these engine outputs are not what this decoder reads."""
        ...

    def decode(self, outputs: Mapping[str, np.ndarray], geometry: Geometry) -> Segmentation:
        """Engine outputs of one frame -> segmentation at source resolution."""
        ...


def model_classes(decoder: Decoder, outputs: tuple[TensorSpec, ...]) -> int | None:
    """How many classes the model's outputs produce, where they say (a decoder may tell by an
    optional `model_classes(outputs)` method; class maps and plugins without it do not say)."""
    method = getattr(decoder, "model_classes", None)
    return None if method is None else method(outputs)


# name -> "module:Class"; Class(card: ModelCard) -> Decoder
DECODERS: Registry[Decoder] = Registry(
    "decoder", Decoder, DecoderError,
    {
        "panoptic_deeplab": "perception.models.decoders.panoptic_deeplab:PanopticDeepLabDecoder",
        "yolo_seg": "perception.models.decoders.yolo_seg:YoloSegDecoder",
        "semantic": "perception.models.decoders.semantic:SemanticDecoder",
    },
    group="perception.decoders",
)


def available_decoders() -> list[str]:
    return DECODERS.names()


def make_decoder(card: ModelCard) -> Decoder:
    if card.decoder not in DECODERS:
        raise DECODERS.unknown(card.decoder, f" named by model card {card.name!r}")
    return DECODERS.create(card.decoder, card)


def require_finite(name: str, array: np.ndarray) -> None:
    """Refuse NaN/inf outputs: they mean a broken model or precision overflow, not an empty scene."""
    if not np.isfinite(array).all():
        raise DecoderError(f"engine output {name!r} contains NaN or inf",
                           "the model or its precision conversion is broken; check it with perception eval")


def first_index_of(stack: np.ndarray, extreme: np.ndarray, dtype: type[np.integer[Any]]) -> np.ndarray:
    """Per element, the lowest i where stack[i] == extreme: an argmax or argmin along the first
    axis, given the max or min (which the callers need anyway).

    numpy's arg-reductions along the first axis walk it with a stride (~20x its min there); one
    OpenCV compare + masked copy per slice, written from the last so the lowest tied index
    wins, costs a fraction of that."""
    index = np.zeros(extreme.shape, dtype)
    for i in range(len(stack) - 1, -1, -1):
        equal = cv2.compare(np.ascontiguousarray(stack[i]), extreme, cv2.CMP_EQ)
        cv2.copyTo(np.full(extreme.shape, i, dtype), equal, index)
    return index


def decoder_params(card: ModelCard, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The card's decoder_params over the decoder's defaults; a key the decoder does not know is
    refused (a misspelt threshold would otherwise be silently ignored)."""
    unknown = sorted(set(card.decoder_params) - set(defaults))
    if unknown:
        raise DecoderError(f"model card {card.name!r}: decoder {card.decoder!r} has no decoder_params {unknown}",
                           f"valid keys: {sorted(defaults)}")
    where = f"model card {card.path or card.name}"
    for key, value in card.decoder_params.items():
        default = defaults[key]
        # bool("false") is True: a quoted boolean would silently turn the option on
        if isinstance(default, bool) and not isinstance(value, bool):
            raise DecoderError(f"{where}: decoder_params {key} = {value!r} is a {type(value).__name__}, "
                               "expected true or false", f"write {key} = {str(default).lower()} or "
                                                          f"{str(not default).lower()} (no quotes)")
        if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            raise DecoderError(f"{where}: decoder_params {key} = {value!r} is a {type(value).__name__}, "
                               "expected a number", f"write {key} = {default} (no quotes)")
    return {**defaults, **card.decoder_params}


def card_classes_check(card: ModelCard, model_classes: int | None, model: str) -> None:
    """Refuse card class ids the model cannot produce (it has `model_classes` classes, 0-based)."""
    if model_classes is None:
        return
    beyond = sorted(c.id for c in card.classes if not 0 <= c.id < model_classes)
    if beyond:
        from perception.core.errors import ModelMismatchError

        raise ModelMismatchError(
            f"model card {card.path or card.name}: [[classes]] id {', '.join(map(str, beyond[:10]))}"
            f"{' ...' if len(beyond) > 10 else ''} is not a class of {model}, which produces class ids "
            f"0..{model_classes - 1}", "remove those [[classes]] entries or give the card the model's own "
                                       "class list (perception inspect MODEL.onnx prints a card skeleton)")
