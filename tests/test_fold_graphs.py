"""perception fold: folded and unfolded models agree through the real Pipeline on ONNX Runtime."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from perception.commands import fold as fold_command
from perception.core.errors import ModelMismatchError
from perception.core.segmentation import Segmentation
from perception.models.card import InputSpec, ModelCard, load_card
from perception.models.errors import ModelCardError
from perception.models.preprocess import Preprocessor
from perception.runtime.pipeline import Pipeline, PipelineSpec
from perception.tools.fold import fold, fold_model
from tests.decoder_graphs import (
    COLOR_CLASSES,
    COLOR_INPUT,
    SOURCE_H,
    SOURCE_W,
    YoloObject,
    color_model,
    color_scene,
    constant_heads_model,
    input_spec,
    save_model,
    write_card,
    yolo_end2end_heads,
    yolo_heads,
    yolo_input,
)

YOLO_CLASSES = [(0, "person", True), (1, "car", True), (2, "bicycle", True)]
OBJECTS = [YoloObject(1, 0.91, (200, 120, 600, 480)), YoloObject(0, 0.83, (700, 200, 860, 640)),
           YoloObject(2, 0.55, (1000, 40, 1240, 300)), YoloObject(0, 0.47, (520, 300, 760, 700))]
PANOPTIC_PARAMS = {"center_threshold": 0.3, "nms_kernel": 15, "min_stuff_area": 4, "min_thing_area": 4}


def run_both(card: Path, folded_card: Path, image: np.ndarray) -> tuple[Segmentation, Segmentation]:
    with Pipeline.open(PipelineSpec(card)) as plain, Pipeline.open(PipelineSpec(folded_card)) as folded:
        return plain.process(image), folded.process(image)


def assert_agree(plain: Segmentation, folded: Segmentation, exact_scores: bool = False) -> None:
    assert len(plain.segments) > 0
    assert (plain.id_map == folded.id_map).all()
    assert plain.segments.class_ids.tolist() == folded.segments.class_ids.tolist()
    assert plain.segments.is_thing.tolist() == folded.segments.is_thing.tolist()
    assert (plain.segments.bboxes == folded.segments.bboxes).all()
    if exact_scores:
        assert plain.segments.scores.tolist() == folded.segments.scores.tolist()
    else:
        np.testing.assert_allclose(plain.segments.scores, folded.segments.scores, rtol=1e-5)


def yolo_model(tmp_path: Path, heads: dict[str, np.ndarray] | None = None,
               params: dict[str, object] | None = None) -> Path:
    heads = heads if heads is not None else yolo_heads(OBJECTS, input_spec(yolo_input()))
    constant_heads_model(tmp_path / "yolo.onnx", heads)
    return write_card(tmp_path / "yolo.toml", "yolo.onnx", "yolo_seg", yolo_input(), YOLO_CLASSES, params)


def source_image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (SOURCE_H, SOURCE_W, 3), np.uint8)


@pytest.mark.parametrize("post", [False, True])
def test_semantic_folded_agrees(tmp_path: Path, post: bool) -> None:
    color_model(tmp_path / "sem.onnx", "logits")
    card = write_card(tmp_path / "sem.toml", "sem.onnx", "semantic", COLOR_INPUT, COLOR_CLASSES, {"min_area": 4})
    folded = fold(tmp_path / "sem.onnx", card, tmp_path / "out" / "sem_folded.onnx", post=post)
    plain, wrapped = run_both(card, folded, color_scene()[0])
    assert_agree(plain, wrapped)
    loaded = load_card(folded)
    assert loaded.input == InputSpec(name="image_bgr", width=128, height=128, layout="NHWC", color="BGR",
                                     dtype="uint8", scale=1.0, resize="letterbox")
    if post:
        assert loaded.decoder_params == {"min_area": 4, "output": "semantic_classes",
                                         "confidence": "semantic_confidence"}


@pytest.mark.parametrize("post", [False, True])
@pytest.mark.parametrize("extra", [{}, {"centers_on_things": True, "min_thing_confidence": 0.5,
                                        "grouping_size_exponent": 0.5, "min_sure_fraction": 0.25}])
def test_panoptic_deeplab_folded_agrees(tmp_path: Path, post: bool, extra: dict[str, object]) -> None:
    color_model(tmp_path / "pan.onnx", "panoptic")
    card = write_card(tmp_path / "pan.toml", "pan.onnx", "panoptic_deeplab", COLOR_INPUT, COLOR_CLASSES,
                      {**PANOPTIC_PARAMS, **extra})
    folded = fold(tmp_path / "pan.onnx", card, tmp_path / "pan_folded.onnx", post=post)
    plain, wrapped = run_both(card, folded, color_scene()[0])
    assert_agree(plain, wrapped)
    assert plain.segments.is_thing.sum() == 2
    if post:
        params = load_card(folded).decoder_params
        assert params["semantic_argmax"] is True and params["centers_folded"] is True
        outputs = [o.name for o in onnx.load(str(tmp_path / "pan_folded.onnx")).graph.output]
        assert outputs == ["semantic_classes", "semantic_confidence", "center_scores", "center_indices", "offsets"]


@pytest.mark.parametrize("post", [False, True])
def test_yolo_seg_folded_agrees(tmp_path: Path, post: bool) -> None:
    card = yolo_model(tmp_path)
    folded = fold(tmp_path / "yolo.onnx", card, tmp_path / "yolo_folded.onnx", post=post)
    plain, wrapped = run_both(card, folded, source_image())
    assert_agree(plain, wrapped, exact_scores=True)
    assert plain.segments.class_ids.tolist() == [1, 0, 2, 0]


def test_yolo_seg_with_semantics_folded_agrees(tmp_path: Path) -> None:
    heads = yolo_heads(OBJECTS[:2], input_spec(yolo_input()), duplicates=False)
    logits = np.zeros((1, 5, 160, 160), np.float32)  # semantics at stride 4
    logits[0, 3, :80] = 4.0
    logits[0, 4, 80:] = 3.0
    heads["semantic"] = logits
    constant_heads_model(tmp_path / "yolo.onnx", heads)
    classes = [*YOLO_CLASSES, (3, "sky", False), (4, "road", False)]
    card = write_card(tmp_path / "yolo.toml", "yolo.onnx", "yolo_seg", yolo_input(), classes, {"semantic": "semantic"})
    folded = fold(tmp_path / "yolo.onnx", card, tmp_path / "yolo_folded.onnx", post=True)
    plain, wrapped = run_both(card, folded, source_image())
    assert_agree(plain, wrapped)
    assert plain.segments.class_ids.tolist() == [1, 0, 3, 4]


def test_float16_yolo_seg_folded_agrees(tmp_path: Path) -> None:
    heads = {k: v.astype(np.float16) for k, v in yolo_heads(OBJECTS, input_spec(yolo_input())).items()}
    card = yolo_model(tmp_path, heads)
    folded = fold(tmp_path / "yolo.onnx", card, tmp_path / "yolo_folded.onnx", post=True)
    plain, wrapped = run_both(card, folded, source_image())
    assert_agree(plain, wrapped, exact_scores=True)
    assert plain.segments.scores.tolist() == [float(np.float16(o.score)) for o in OBJECTS]


def test_nms_free_yolo_seg_folded_agrees(tmp_path: Path) -> None:
    card = yolo_model(tmp_path, yolo_end2end_heads(OBJECTS, input_spec(yolo_input())))
    folded = fold(tmp_path / "yolo.onnx", card, tmp_path / "yolo_folded.onnx", post=True)
    plain, wrapped = run_both(card, folded, source_image())
    assert_agree(plain, wrapped, exact_scores=True)
    assert plain.segments.class_ids.tolist() == [1, 0, 2, 0]


def test_yolo_seg_folded_agrees_on_ten_thousand_candidates(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 10000
    head = np.zeros((4 + 3 + 32, n), np.float32)
    head[0:2] = rng.uniform(0, 640, (2, n))
    head[2:4] = rng.uniform(4, 80, (2, n))
    head[4 + rng.integers(0, 3, n), np.arange(n)] = rng.uniform(0.3, 1.0, n)
    head[7:] = rng.normal(0, 1, (32, n))
    protos = rng.normal(0, 3, (1, 32, 160, 160)).astype(np.float32)
    card = yolo_model(tmp_path, {"output0": head[None], "output1": protos},
                      {"max_candidates": 300, "max_detections": 50, "overlap_threshold": 0.0})
    folded = fold(tmp_path / "yolo.onnx", card, tmp_path / "yolo_folded.onnx", post=True)
    plain, wrapped = run_both(card, folded, source_image())
    assert 0 < len(plain.segments) <= 50
    assert plain.segments.scores.tolist() == wrapped.segments.scores.tolist()
    assert plain.segments.class_ids.tolist() == wrapped.segments.class_ids.tolist()
    # masks from the graph's MatMul and numpy's may differ by float rounding right at the threshold
    assert (plain.id_map == wrapped.id_map).mean() > 0.999


def test_yolo_seg_folded_with_zero_detections_is_empty(tmp_path: Path) -> None:
    heads = yolo_heads(OBJECTS, input_spec(yolo_input()))
    heads["output0"][0, 4:7] = 0.1
    card = yolo_model(tmp_path, heads)
    folded = fold(tmp_path / "yolo.onnx", card, tmp_path / "yolo_folded.onnx", post=True)
    plain, wrapped = run_both(card, folded, source_image())
    assert len(plain.segments) == len(wrapped.segments) == 0
    assert not wrapped.id_map.any() and wrapped.shape == (SOURCE_H, SOURCE_W)


def identity_model(path: Path, layout: str, dtype: str, opset: int = 17) -> Path:
    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "uint8": TensorProto.UINT8}[dtype]
    shape = [1, 3, 48, 64] if layout == "NCHW" else [1, 48, 64, 3]
    return save_model([helper.make_node("Identity", ["x"], ["y"])],
                      [helper.make_tensor_value_info("x", elem, shape)],
                      [helper.make_tensor_value_info("y", elem, shape)], [], path, opset=opset)


@pytest.mark.parametrize(("layout", "color", "dtype"), [
    ("NCHW", "RGB", "float32"), ("NHWC", "RGB", "float32"), ("NCHW", "BGR", "float16"),
    ("NHWC", "BGR", "uint8"), ("NCHW", "RGB", "uint8"),
])
def test_folded_preprocessing_equals_the_numpy_preprocessor(tmp_path: Path, layout: str, color: str,
                                                            dtype: str) -> None:
    spec = InputSpec(name="x", width=64, height=48, layout=layout, color=color, dtype=dtype,
                     scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize="letterbox")
    card = ModelCard(name="id", onnx=tmp_path / "id.onnx", decoder="semantic", input=spec, classes=())
    model, data = fold_model(onnx.load(str(identity_model(tmp_path / "id.onnx", layout, dtype))), card)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(2).integers(0, 255, (100, 90, 3), np.uint8)
    expected, _ = Preprocessor(spec)(image)
    folded_input, _ = Preprocessor(InputSpec(name=data["input"]["name"], width=64, height=48, layout="NHWC",
                                             color="BGR", dtype="uint8", resize="letterbox"))(image)
    (got,) = session.run(None, {"image_bgr": folded_input})
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32), rtol=1e-3, atol=1e-5)


def test_old_opset_is_refused(tmp_path: Path) -> None:
    identity_model(tmp_path / "old.onnx", "NCHW", "float32", opset=11)
    card = write_card(tmp_path / "old.toml", "old.onnx", "semantic",
                      {"name": "x", "width": 64, "height": 48}, COLOR_CLASSES)
    with pytest.raises(ModelMismatchError, match="opset 11"):
        fold(tmp_path / "old.onnx", card, tmp_path / "new.onnx")


def test_card_naming_another_input_is_refused(tmp_path: Path) -> None:
    identity_model(tmp_path / "m.onnx", "NCHW", "float32")
    card = write_card(tmp_path / "m.toml", "m.onnx", "semantic", {"name": "images", "width": 64, "height": 48},
                      COLOR_CLASSES)
    with pytest.raises(ModelMismatchError, match=r"inputs \['x'\]; the card says one input 'images'"):
        fold(tmp_path / "m.onnx", card, tmp_path / "new.onnx")


def test_post_folding_of_missing_outputs_is_refused(tmp_path: Path) -> None:
    card = yolo_model(tmp_path, params={"output0": "detections"})
    with pytest.raises(ModelMismatchError, match="no output 'detections'"):
        fold(tmp_path / "yolo.onnx", card, tmp_path / "f.onnx", post=True)


def test_folding_onto_the_input_file_is_refused(tmp_path: Path) -> None:
    card = yolo_model(tmp_path)
    with pytest.raises(ModelCardError, match="overwrite"):
        fold(tmp_path / "yolo.onnx", card, tmp_path / "yolo.onnx")


def test_fold_command_writes_model_and_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = yolo_model(tmp_path)
    parser = argparse.ArgumentParser()
    fold_command.register(parser.add_subparsers())
    args = parser.parse_args(["fold", str(tmp_path / "yolo.onnx"), "--card", str(card),
                              "--out", str(tmp_path / "f.onnx"), "--post"])
    assert args.func(args) == 0
    assert "f.toml" in capsys.readouterr().out
    assert load_card(tmp_path / "f.toml").decoder_params["assembled"] is True


SHIPPED = Path(__file__).resolve().parents[1] / "engines"


@pytest.mark.parametrize("post", [False, True])
def test_shipped_trained_model_folded_agrees_on_synthetic_frames(tmp_path: Path, post: bool) -> None:
    from perception.synth import Drive

    card = fold(SHIPPED / "panoptic-tiny.onnx", SHIPPED / "panoptic-tiny.toml", tmp_path / "tiny.onnx", post=post)
    drive = Drive(seed=7, frames=5, width=640, height=384)
    with Pipeline.open(PipelineSpec(SHIPPED / "panoptic-tiny.toml")) as plain, \
            Pipeline.open(PipelineSpec(card)) as folded:
        for i in range(5):
            image = drive.frame(i).bgr
            assert_agree(plain.process(image), folded.process(image))
