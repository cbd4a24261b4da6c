"""Semantic-only decoding (logits and argmax exports) through the real Pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.core.errors import ModelMismatchError
from perception.models.errors import DecoderError
from perception.runtime.pipeline import Pipeline, PipelineSpec
from tests.decoder_graphs import (
    COLOR_CLASSES,
    COLOR_INPUT,
    color_model,
    color_scene,
    constant_heads_model,
    mask_iou,
    write_card,
)


def open_semantic(tmp_path: Path, kind: str, params: dict[str, object] | None = None,
                  classes: list[tuple[int, str, bool]] | None = None) -> Pipeline:
    color_model(tmp_path / "sem.onnx", kind)
    card = write_card(tmp_path / "sem.toml", "sem.onnx", "semantic", COLOR_INPUT, classes or COLOR_CLASSES, params)
    return Pipeline.open(PipelineSpec(card))


@pytest.mark.parametrize("kind", ["logits", "argmax", "argmax4d"])
def test_one_stuff_segment_per_class_at_source_resolution(tmp_path: Path, kind: str) -> None:
    image, truth = color_scene()
    with open_semantic(tmp_path, kind, {"min_area": 4}) as pipe:
        result = pipe.process(image)
    segs = result.segments
    assert result.shape == image.shape[:2]
    assert segs.class_ids.tolist() == [0, 1, 2, 3]
    assert not segs.is_thing.any()  # even "car": one region for all cars is not an object
    names = {0: "road", 1: "vegetation", 2: "sky"}
    for k, class_id in enumerate(segs.class_ids):
        expected = truth["car0"] | truth["car1"] if class_id == 3 else truth[names[int(class_id)]]
        assert mask_iou(result.mask(int(segs.ids[k])), expected) >= 0.95
    if kind == "logits":
        assert (segs.scores > 0.98).all() and (segs.scores <= 1).all()
    else:
        assert segs.scores.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_regions_below_min_area_stay_void(tmp_path: Path) -> None:
    image, _ = color_scene()
    # the two cars are 2 x 11 x 11 = 242 input pixels; sky and road are far larger
    with open_semantic(tmp_path, "logits", {"min_area": 300}) as pipe:
        result = pipe.process(image)
    assert 3 not in result.segments.class_ids.tolist()
    assert result.semantic()[500, 550] == -1  # a car pixel is void


def test_wrong_color_order_in_card_changes_the_result(tmp_path: Path) -> None:
    image, truth = color_scene()
    table = {**COLOR_INPUT, "color": "BGR"}
    color_model(tmp_path / "sem.onnx", "logits")
    card = write_card(tmp_path / "sem.toml", "sem.onnx", "semantic", table, COLOR_CLASSES)
    with Pipeline.open(PipelineSpec(card)) as pipe:
        result = pipe.process(image)
    # red and blue swap: the sky band is now read as cars
    sky_now = result.semantic()[truth["sky"]]
    assert (sky_now == 3).mean() > 0.95


def test_nan_logits_raise_decode_error(tmp_path: Path) -> None:
    logits = np.zeros((1, 4, 128, 128), np.float32)
    logits[0, 2, 5, 5] = np.nan
    constant_heads_model(tmp_path / "sem.onnx", {"semantic_logits": logits}, input_name="image",
                         input_shape=(1, 3, 128, 128))
    card = write_card(tmp_path / "sem.toml", "sem.onnx", "semantic", COLOR_INPUT, COLOR_CLASSES)
    with Pipeline.open(PipelineSpec(card)) as pipe, pytest.raises(DecoderError, match="NaN or inf"):
        pipe.process(color_scene()[0])


@pytest.mark.parametrize(("heads", "params", "message"), [
    ({"semantic_logits": np.zeros((1, 3, 128, 128), np.float32)}, {},
     r"\[\[classes\]\] id 3 is not a class of sem.onnx, which produces class ids 0..2"),
    ({"semantic_logits": np.zeros((1, 128, 128), np.float32)}, {}, "expected logits"),
    ({"classes": np.zeros((1, 4, 128, 128), np.int64)}, {}, "expected a class map"),
    ({"semantic_logits": np.zeros((1, 4, 128, 128), np.float32)}, {"output": "seg"}, "has no output 'seg'"),
    ({"semantic_logits": np.zeros((1, 4, 128, 128), np.float32)}, {"confidence": "conf"}, "no output 'conf'"),
])
def test_outputs_that_disagree_with_the_card_are_refused(tmp_path: Path, heads: dict[str, np.ndarray],
                                                          params: dict[str, object], message: str) -> None:
    constant_heads_model(tmp_path / "sem.onnx", heads, input_name="image", input_shape=(1, 3, 128, 128))
    card = write_card(tmp_path / "sem.toml", "sem.onnx", "semantic", COLOR_INPUT, COLOR_CLASSES, params)
    with pytest.raises(ModelMismatchError, match=message):
        Pipeline.open(PipelineSpec(card))
