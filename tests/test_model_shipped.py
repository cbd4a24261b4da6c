"""The shipped model: loads, agrees with its card, is small, and segments held-out synthetic drives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

from perception.commands.eval import DEFAULT_SEEDS
from perception.evaluation.runner import evaluate
from perception.models.card import load_card
from perception.runtime.pipeline import Pipeline, PipelineSpec
from perception.synth import CLASS_NAMES, THING_CLASSES, Drive

ENGINES = Path(__file__).resolve().parent.parent / "engines"
CARD = ENGINES / "panoptic-tiny.toml"


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Pipeline]:
    with Pipeline.open(PipelineSpec(CARD)) as p:
        yield p


def test_card_matches_the_generator_classes() -> None:
    card = load_card(CARD)
    assert card.onnx == ENGINES / "panoptic-tiny.onnx"
    assert [c.name for c in card.classes] == list(CLASS_NAMES)
    assert {c.id for c in card.classes if c.thing} == set(THING_CLASSES)
    assert card.decoder == "panoptic_deeplab"
    assert (card.input.width, card.input.height, card.input.color, card.input.layout) == (320, 192, "RGB", "NCHW")


def test_onnx_is_small_valid_and_has_the_named_outputs() -> None:
    path = ENGINES / "panoptic-tiny.onnx"
    assert path.stat().st_size < 8 * 1024 * 1024
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["semantic_logits", "center_heatmap", "offsets"]


def test_outputs_have_the_documented_shapes_and_ranges(pipeline: Pipeline) -> None:
    frame = Drive(15, frames=1).frame(0)
    tensor, _ = pipeline.preprocessor(frame.bgr)
    out = pipeline.engine.infer({"image": tensor})
    assert out["semantic_logits"].shape == (1, 8, 192, 320)
    heat = out["center_heatmap"]
    assert heat.shape == (1, 1, 192, 320) and heat.min() >= 0.0 and heat.max() <= 1.0
    assert out["offsets"].shape == (1, 2, 192, 320)
    assert np.isfinite(out["offsets"]).all()


def test_segments_held_out_frames_at_any_source_size(pipeline: Pipeline) -> None:
    frame = Drive(16, frames=1, width=640, height=384).frame(0)
    seg = pipeline.process(frame.bgr)
    assert seg.id_map.shape == (384, 640)
    assert set(seg.segments.class_ids.tolist()) >= {0, 3}  # road and sky are always there


def test_sanity_pq_on_a_few_held_out_frames(pipeline: Pipeline) -> None:
    frames = [(f.bgr, f.truth) for seed in (17, 18) for f in Drive(seed, frames=4, fps=2.0)]
    report = evaluate(pipeline.card, pipeline.process, frames).to_dict()
    assert report["stuff"]["pq"] > 70.0, report
    assert report["things"]["pq"] > 25.0, report
    assert report["miou"] > 70.0, report


def test_holds_its_scores_on_the_test_drives(pipeline: Pipeline) -> None:
    """What `perception eval` scores by default (test drives 11-18, 25 frames each at 2 fps): on the
    build machine PQ 76.78, things 55.04 against the targets 75 / 55 (engines/panoptic-tiny.report.md).
    The things floor sits 0.5 under the target, not at it: another CPU's kernels round a few logits
    differently, which can flip a borderline match (~0.05 things PQ each); a change to decoding or
    weights that loses more than that fails here."""
    frames = [(f.bgr, f.truth) for seed in DEFAULT_SEEDS for f in Drive(seed, frames=25, fps=2.0)]
    report = evaluate(pipeline.card, pipeline.process, frames).to_dict()
    assert report["frames"] == 200
    assert report["all"]["pq"] >= 75.0, report
    assert report["things"]["pq"] >= 54.5, report
