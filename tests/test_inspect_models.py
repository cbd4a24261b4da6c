"""perception inspect: tensors, metadata, the decoder that fits, and a card skeleton that works."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from perception.commands import inspect as inspect_command
from perception.core.errors import PerceptionError
from perception.models.card import load_card
from perception.models.errors import ModelCardError
from perception.runtime.pipeline import Pipeline, PipelineSpec
from perception.tools.fold import fold
from perception.tools.inspect import card_skeleton, fitting_decoders, read_model, render_card, report
from tests.decoder_graphs import (
    COLOR_CLASSES,
    COLOR_INPUT,
    YoloObject,
    color_model,
    constant_heads_model,
    input_spec,
    write_card,
    yolo_end2end_heads,
    yolo_heads,
    yolo_input,
)

ULTRALYTICS_METADATA = {"names": "{0: 'person', 1: 'car', 2: 'bicycle'}", "imgsz": "[640, 640]",
                        "task": "segment", "stride": "32"}


def run_inspect(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    inspect_command.register(parser.add_subparsers())
    args = parser.parse_args(["inspect", *argv])
    return int(args.func(args))


def yolo_file(tmp_path: Path) -> Path:
    heads = yolo_heads([YoloObject(1, 0.9, (200, 120, 600, 480))], input_spec(yolo_input()))
    return constant_heads_model(tmp_path / "yolo11n-seg.onnx", heads, metadata=ULTRALYTICS_METADATA)


def test_yolo_export_report_and_skeleton_that_opens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = yolo_file(tmp_path)
    assert run_inspect([str(model), "--card-out", str(tmp_path / "yolo.toml")]) == 0
    out = capsys.readouterr().out
    assert "images  [1, 3, 640, 640]  float32" in out
    assert "output0  [1, 39, 400]  float32" in out
    assert "output1  [1, 32, 160, 160]  float32" in out
    assert "task: segment" in out
    assert "yolo_seg: output0 [1, 39, 400] = 4 box + 3 class + 32 mask values per anchor" in out
    card = load_card(tmp_path / "yolo.toml")
    assert card.decoder == "yolo_seg"
    assert [(c.id, c.name, c.thing) for c in card.classes] == [(0, "person", True), (1, "car", True),
                                                               (2, "bicycle", True)]
    assert card.input.resize == "letterbox" and (card.input.width, card.input.height) == (640, 640)
    with Pipeline.open(PipelineSpec(tmp_path / "yolo.toml")) as pipe:
        result = pipe.process(np.zeros((720, 1280, 3), np.uint8))
    assert result.segments.class_ids.tolist() == [1]


def test_panoptic_model_fits_panoptic_deeplab_then_semantic(tmp_path: Path) -> None:
    info = read_model(color_model(tmp_path / "pan.onnx", "panoptic"))
    fits = fitting_decoders(info)
    assert [f.decoder for f in fits] == ["panoptic_deeplab", "semantic"]
    assert fits[0].params == {"semantic": "semantic_logits", "center": "center_heatmap", "offsets": "offsets"}
    data = card_skeleton(info, fits[0])
    assert [c["name"] for c in data["classes"]] == ["class_0", "class_1", "class_2", "class_3"]
    (tmp_path / "pan.toml").write_text(render_card(data), encoding="utf-8")
    with Pipeline.open(PipelineSpec(tmp_path / "pan.toml")) as pipe:
        assert pipe.process(np.zeros((96, 128, 3), np.uint8)).shape == (96, 128)


def test_argmax_export_fits_semantic(tmp_path: Path) -> None:
    info = read_model(color_model(tmp_path / "sem.onnx", "argmax"))
    fits = fitting_decoders(info)
    assert [(f.decoder, f.params) for f in fits] == [("semantic", {"output": "classes"})]
    assert "semantic: classes [1, 128, 128] int64 = a per-pixel class map" in report(info)


def test_folded_yolo_fits_the_assembled_reading(tmp_path: Path) -> None:
    model = yolo_file(tmp_path)
    card = write_card(tmp_path / "y.toml", model.name, "yolo_seg", yolo_input(),
                      [(0, "person", True), (1, "car", True), (2, "bicycle", True)])
    fold(model, card, tmp_path / "folded.onnx", post=True)
    fits = fitting_decoders(read_model(tmp_path / "folded.onnx"))
    assert [(f.decoder, f.params) for f in fits] == [("yolo_seg", {"assembled": True})]


def test_outputs_no_decoder_reads_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = constant_heads_model(tmp_path / "odd.onnx", {"embedding": np.zeros((1, 512), np.float32)},
                                 input_name="image", input_shape=(1, 3, 64, 64))
    assert run_inspect([str(model)]) == 0
    out = capsys.readouterr().out
    assert "decoder: none fits these outputs" in out and "embedding  [1, 512]" in out
    with pytest.raises(ModelCardError, match="no decoder fits"):
        run_inspect([str(model), "--card-out", str(tmp_path / "odd.toml")])


def test_existing_card_is_not_overwritten(tmp_path: Path) -> None:
    model = yolo_file(tmp_path)
    (tmp_path / "mine.toml").write_text("# hand-edited\n", encoding="utf-8")
    with pytest.raises(ModelCardError, match="already exists"):
        run_inspect([str(model), "--card-out", str(tmp_path / "mine.toml")])
    assert (tmp_path / "mine.toml").read_text(encoding="utf-8") == "# hand-edited\n"


def test_a_file_that_is_not_onnx_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(PerceptionError, match="cannot load"):
        read_model(bad)


def test_rendered_cards_round_trip_through_the_loader(tmp_path: Path) -> None:
    color_model(tmp_path / "sem.onnx", "logits")
    card = load_card(write_card(tmp_path / "sem.toml", "sem.onnx", "semantic", COLOR_INPUT, COLOR_CLASSES,
                                {"min_area": 7, "output": 'odd "name"'}))
    (tmp_path / "again.toml").write_text(render_card(card.to_dict()), encoding="utf-8")
    again = load_card(tmp_path / "again.toml")
    assert again.to_dict() == card.to_dict()


def test_nms_free_export_is_recognised(tmp_path: Path) -> None:
    heads = yolo_end2end_heads([YoloObject(1, 0.9, (200, 120, 600, 480))], input_spec(yolo_input()))
    model = constant_heads_model(tmp_path / "e2e.onnx", heads, metadata={**ULTRALYTICS_METADATA, "end2end": "True"})
    info = read_model(model)
    (fit,) = fitting_decoders(info)
    assert fit.decoder == "yolo_seg" and "300 NMS-free detections" in fit.reason
    (tmp_path / "e2e.toml").write_text(render_card(card_skeleton(info, fit)), encoding="utf-8")
    with Pipeline.open(PipelineSpec(tmp_path / "e2e.toml")) as pipe:
        assert pipe.process(np.zeros((720, 1280, 3), np.uint8)).segments.class_ids.tolist() == [1]


def test_cli_reports_a_missing_model_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perception.cli import main

    assert main(["inspect", str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.onnx does not exist" in err[0]
    assert "--card" not in err[0]  # inspect takes no card; the hint is about the path given
    assert main(["fold", str(tmp_path / "missing.onnx"), "--card", str(tmp_path / "none.toml"),
                 "--out", str(tmp_path / "out.onnx")]) == 2
    assert "none.toml does not exist" in capsys.readouterr().err


def test_card_out_writes_the_card_once_not_also_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from perception.cli import main

    model = yolo_file(tmp_path)
    assert main(["inspect", str(model), "--card-out", str(tmp_path / "yolo.toml")]) == 0
    out = capsys.readouterr().out
    assert "yolo_seg: output0" in out and f"card skeleton written to {tmp_path / 'yolo.toml'}" in out
    assert "[[classes]]" not in out and "card skeleton for" not in out
    assert "[[classes]]" in (tmp_path / "yolo.toml").read_text(encoding="utf-8")
    assert main(["inspect", str(model)]) == 0  # without --card-out the skeleton is the output
    assert "[[classes]]" in capsys.readouterr().out
