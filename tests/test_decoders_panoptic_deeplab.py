"""Panoptic-DeepLab decoding through the real Pipeline: instances from centers, stuff by fusion."""

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

PARAMS = {"center_threshold": 0.3, "nms_kernel": 15, "min_stuff_area": 4, "min_thing_area": 4}


def open_panoptic(tmp_path: Path, params: dict[str, object] | None = None) -> Pipeline:
    color_model(tmp_path / "pan.onnx", "panoptic")
    card = write_card(tmp_path / "pan.toml", "pan.onnx", "panoptic_deeplab", COLOR_INPUT, COLOR_CLASSES,
                      {**PARAMS, **(params or {})})
    return Pipeline.open(PipelineSpec(card))


def test_two_cars_become_two_instances_and_stuff_fills_the_rest(tmp_path: Path) -> None:
    image, truth = color_scene()
    with open_panoptic(tmp_path) as pipe:
        result = pipe.process(image)
    segs = result.segments
    assert segs.class_ids.tolist() == [3, 3, 0, 1, 2]
    assert segs.is_thing.tolist() == [True, True, False, False, False]
    cars = [result.mask(int(segs.ids[k])) for k in (0, 1)]
    left, right = sorted(cars, key=lambda m: np.nonzero(m)[1].mean())
    assert mask_iou(left, truth["car0"]) >= 0.95
    assert mask_iou(right, truth["car1"]) >= 0.95
    assert mask_iou(result.mask(int(segs.ids[4])), truth["sky"]) >= 0.95
    assert segs.bboxes[2:].min() >= 0 and (segs.bboxes[:, 2] <= image.shape[1]).all()
    assert int(segs.areas.sum()) == image.shape[0] * image.shape[1]  # letterbox undone, nothing void


def test_even_nms_kernel_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DecoderError, match="odd"):
        open_panoptic(tmp_path, {"nms_kernel": 8})


def test_misspelt_decoder_params_are_refused_with_the_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(DecoderError, match=r"no decoder_params \['center_treshold'\]") as caught:
        open_panoptic(tmp_path, {"center_treshold": 0.2})
    assert "center_threshold" in caught.value.fix


def test_missing_head_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelMismatchError, match=r"no output 'centers' \(it has"):
        open_panoptic(tmp_path, {"center": "centers"})


@pytest.mark.parametrize("head", ["semantic_logits", "center_heatmap", "offsets"])
def test_nan_in_any_head_raises_decode_error(tmp_path: Path, head: str) -> None:
    heads = {"semantic_logits": np.zeros((1, 4, 128, 128), np.float32),
             "center_heatmap": np.zeros((1, 1, 128, 128), np.float32),
             "offsets": np.zeros((1, 2, 128, 128), np.float32)}
    heads[head][0, 0, 64, 64] = np.inf if head == "offsets" else np.nan
    constant_heads_model(tmp_path / "pan.onnx", heads, input_name="image", input_shape=(1, 3, 128, 128))
    card = write_card(tmp_path / "pan.toml", "pan.onnx", "panoptic_deeplab", COLOR_INPUT, COLOR_CLASSES, PARAMS)
    with Pipeline.open(PipelineSpec(card)) as pipe, pytest.raises(DecoderError, match="NaN or inf"):
        pipe.process(color_scene()[0])
