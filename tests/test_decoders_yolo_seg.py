"""YOLO-seg decoding through the real Pipeline on ONNX Runtime, at source resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.core.errors import ModelMismatchError
from perception.models.card import ClassInfo
from perception.models.decoders.yolo_seg import classes_from_metadata, merge_classes
from perception.models.errors import DecoderError, ModelCardError
from perception.runtime.pipeline import Pipeline, PipelineSpec
from tests.decoder_graphs import (
    SOURCE_H,
    SOURCE_W,
    YoloObject,
    box_iou,
    constant_heads_model,
    expected_mask,
    input_spec,
    mask_iou,
    write_card,
    yolo_end2end_heads,
    yolo_heads,
    yolo_input,
)

CLASSES = [(0, "person", True), (1, "car", True), (2, "bicycle", True)]
OBJECTS = [
    YoloObject(1, 0.91, (200, 120, 600, 480)),
    YoloObject(0, 0.83, (700, 200, 860, 640)),
    YoloObject(2, 0.55, (1000, 40, 1240, 300)),
    # overlaps the car; lower score, so the car keeps the shared pixels
    YoloObject(0, 0.47, (520, 300, 760, 700)),
]


def make_pipeline(tmp_path: Path, heads: dict[str, np.ndarray], resize: str = "letterbox",
                  params: dict[str, object] | None = None, classes: list[tuple[int, str, bool]] | None = None,
                  width: int = 640, height: int = 640) -> Pipeline:
    table = yolo_input(resize, width, height)
    constant_heads_model(tmp_path / "yolo.onnx", heads, input_shape=(1, 3, height, width))
    card = write_card(tmp_path / "yolo.toml", "yolo.onnx", "yolo_seg", table, classes or CLASSES, params)
    return Pipeline.open(PipelineSpec(card))


def source_image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (SOURCE_H, SOURCE_W, 3), np.uint8)


def check_objects(result, objects: list[YoloObject]) -> None:
    assert result.shape == (SOURCE_H, SOURCE_W)
    segs = result.segments
    assert len(segs) == len(objects)
    assert segs.is_thing.all()
    order = sorted(objects, key=lambda o: -o.score)
    taken = np.zeros((SOURCE_H, SOURCE_W), bool)
    for k, obj in enumerate(order):
        assert segs.class_ids[k] == obj.class_id
        assert segs.scores[k] == np.float32(obj.score)  # exact: the model's own float
        truth = expected_mask(obj) & ~taken  # higher score wins shared pixels
        taken |= expected_mask(obj)
        got = result.mask(int(segs.ids[k]))
        assert mask_iou(got, truth) >= 0.95
        assert segs.areas[k] == np.count_nonzero(got)
        ys, xs = np.nonzero(truth)
        assert box_iou(segs.bboxes[k].tolist(), [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) >= 0.99


@pytest.mark.parametrize(("resize", "width", "height"), [("letterbox", 640, 640), ("stretch", 640, 640),
                                                         ("letterbox", 320, 192)])
def test_known_objects_come_back_at_source_resolution(tmp_path: Path, resize: str, width: int, height: int) -> None:
    spec = input_spec(yolo_input(resize, width, height))
    with make_pipeline(tmp_path, yolo_heads(OBJECTS, spec), resize, width=width, height=height) as pipe:
        result = pipe.process(source_image())
    check_objects(result, OBJECTS)


def test_first_object_box_is_exact_through_letterbox(tmp_path: Path) -> None:
    spec = input_spec(yolo_input())
    with make_pipeline(tmp_path, yolo_heads(OBJECTS, spec)) as pipe:
        result = pipe.process(source_image())
    # the car's shape extends past its box, so cropping to the box gives the box itself
    assert result.segments.bboxes[0].tolist() == [200, 120, 600, 480]
    assert (result.id_map[:, :200] != result.segments.ids[0]).all()


def test_class_aware_nms_keeps_other_class_on_same_box(tmp_path: Path) -> None:
    spec = input_spec(yolo_input())
    heads = yolo_heads([YoloObject(1, 0.9, (100, 100, 300, 300))], spec, duplicates=False)
    head = heads["output0"][0]
    # same box, other class, own mask larger than the first: survives NMS, then the overlap rule
    src = int(np.nonzero(head[5])[0][0])
    dst = (src + 1) % head.shape[1]
    head[:, dst] = head[:, src]
    head[4:7, dst] = (0.6, 0.0, 0.0)
    head[7:, dst] = 0.0
    head[7 + 1, dst] = 1.0
    heads["output1"][0, 1] = 10.0
    with make_pipeline(tmp_path, heads, params={"overlap_threshold": 0.0}) as pipe:
        result = pipe.process(source_image())
    assert result.segments.class_ids.tolist() == [1, 0]
    assert result.segments.scores.tolist() == [np.float32(0.9), np.float32(0.6)]
    with make_pipeline(tmp_path, heads) as pipe:  # default rule: the hidden-but-for-a-frame one goes
        assert pipe.process(source_image()).segments.class_ids.tolist() == [1]


def test_zero_detections_give_an_empty_result(tmp_path: Path) -> None:
    spec = input_spec(yolo_input())
    heads = yolo_heads(OBJECTS, spec)
    heads["output0"][0, 4:7] = np.minimum(heads["output0"][0, 4:7], 0.2)  # all below conf_threshold 0.25
    with make_pipeline(tmp_path, heads) as pipe:
        result = pipe.process(source_image())
    assert len(result.segments) == 0
    assert result.shape == (SOURCE_H, SOURCE_W)
    assert not result.id_map.any()


def test_ten_thousand_candidates_are_capped(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 10000
    head = np.zeros((4 + 3 + 32, n), np.float32)
    head[0] = rng.uniform(0, 640, n)
    head[1] = rng.uniform(0, 640, n)
    head[2:4] = rng.uniform(4, 60, (2, n))
    head[4 + rng.integers(0, 3, n), np.arange(n)] = rng.uniform(0.3, 1.0, n)
    head[7:] = rng.normal(0, 1, (32, n))
    protos = rng.normal(0, 3, (1, 32, 160, 160)).astype(np.float32)
    with make_pipeline(tmp_path, {"output0": head[None], "output1": protos},
                       params={"max_candidates": 300, "max_detections": 100}) as pipe:
        result = pipe.process(source_image())
    assert 0 < len(result.segments) <= 100
    # the kept ones are among the 300 best candidates
    cutoff = np.sort(head[4:7].max(axis=0))[-300]
    assert (result.segments.scores >= cutoff).all()


@pytest.mark.parametrize("where", ["score", "box", "proto"])
def test_nan_or_inf_outputs_raise_decode_error(tmp_path: Path, where: str) -> None:
    spec = input_spec(yolo_input())
    heads = yolo_heads(OBJECTS, spec)
    anchor = int(np.argmax(heads["output0"][0, 5]))  # the car's anchor
    if where == "score":
        heads["output0"][0, 6, 17] = np.nan
    elif where == "box":
        heads["output0"][0, 2, anchor] = np.inf
    else:
        heads["output1"][0, 0, :, :] = np.nan  # prototype 0 is the car's
    with make_pipeline(tmp_path, heads) as pipe, pytest.raises(DecoderError, match="NaN or inf"):
        pipe.process(source_image())


def test_card_missing_detector_classes_is_refused(tmp_path: Path) -> None:
    spec = input_spec(yolo_input())
    with pytest.raises(ModelMismatchError, match=r"detects 3 classes .* lacks class ids \[2\]"):
        make_pipeline(tmp_path, yolo_heads(OBJECTS, spec), classes=CLASSES[:2])


def test_outputs_that_are_not_yolo_are_refused_with_what_was_found(tmp_path: Path) -> None:
    heads = {"logits": np.zeros((1, 5, 160, 160), np.float32)}
    with pytest.raises(ModelMismatchError, match=r"expects output 'output0'.*logits \[1, 5, 160, 160\]"):
        make_pipeline(tmp_path, heads)


def test_protos_that_leave_no_room_for_classes_are_refused(tmp_path: Path) -> None:
    heads = {"output0": np.zeros((1, 36, 100), np.float32), "output1": np.zeros((1, 32, 160, 160), np.float32)}
    with pytest.raises(ModelMismatchError, match="cannot split"):
        make_pipeline(tmp_path, heads)


def test_semantic_stuff_fills_what_instances_leave(tmp_path: Path) -> None:
    spec = input_spec(yolo_input())
    heads = yolo_heads(OBJECTS[:1], spec, duplicates=False)
    logits = np.zeros((1, 5, 640, 640), np.float32)
    logits[0, 3, :320] = 5.0  # "sky" on the top half of the input, "road" below
    logits[0, 4, 320:] = 5.0
    heads["semantic"] = logits
    classes = [*CLASSES, (3, "sky", False), (4, "road", False)]
    with make_pipeline(tmp_path, heads, params={"semantic": "semantic"}, classes=classes) as pipe:
        result = pipe.process(source_image())
    segs = result.segments
    assert segs.class_ids.tolist() == [1, 3, 4]
    assert segs.is_thing.tolist() == [True, False, False]
    # letterbox: input row 320 is source row (320 - 140) / 0.5 = 360
    sky = result.mask(int(segs.ids[1]))
    assert sky[:360].sum() + np.count_nonzero(result.mask(1)[:360]) == 360 * SOURCE_W
    assert not sky[360:].any()
    assert segs.scores[1] == pytest.approx(np.exp(5) / (np.exp(5) + 4), rel=1e-5)
    assert np.count_nonzero(result.id_map) == SOURCE_H * SOURCE_W


def test_class_names_from_ultralytics_metadata() -> None:
    names = classes_from_metadata({"names": "{0: 'person', 1: 'bicycle', 2: 'car'}"})
    assert [(c.id, c.name, c.thing) for c in names] == [(0, "person", True), (1, "bicycle", True), (2, "car", True)]
    assert classes_from_metadata({}) == ()
    card = [ClassInfo(1, "cyclist", True)]
    assert [c.name for c in merge_classes(names, card)] == ["person", "cyclist", "car"]


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "{'a': 'b'}", "{0: 'x'", "[1, 2"])
def test_class_names_metadata_that_is_not_a_literal_dict_is_refused(text: str) -> None:
    with pytest.raises(ModelCardError, match="names"):
        classes_from_metadata({"names": text})


def test_nms_free_end2end_export_decodes_the_same_objects(tmp_path: Path) -> None:
    spec = input_spec(yolo_input())
    with make_pipeline(tmp_path, yolo_end2end_heads(OBJECTS, spec)) as pipe:
        result = pipe.process(source_image())
    check_objects(result, OBJECTS)


def test_nms_free_export_with_a_class_the_card_lacks_is_refused(tmp_path: Path) -> None:
    spec = input_spec(yolo_input())
    heads = yolo_end2end_heads(OBJECTS, spec)
    heads["output0"][0, 0, 5] = 7.0
    with make_pipeline(tmp_path, heads) as pipe, pytest.raises(DecoderError, match=r"class ids \[7\]"):
        pipe.process(source_image())
