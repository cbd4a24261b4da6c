"""The shipped model's FP16 and INT8 variants against its FP32, through the real gate (PQ, ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from perception.models.card import ModelCard, load_card
from perception.tools.accuracy import pq_evaluator
from perception.tools.calibration import calibration_reader
from perception.tools.precision import GATE_LIMITS, convert_fp16, gate, quantize_int8

CARD = Path(__file__).resolve().parents[1] / "engines" / "panoptic-tiny.toml"
FRAMES = 40

pytestmark = pytest.mark.skipif(not CARD.is_file(),
                                reason="the shipped model engines/panoptic-tiny.{onnx,toml} is not here")


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return load_card(CARD)


@pytest.fixture(scope="module")
def evaluate(card: ModelCard) -> object:
    return pq_evaluator(card, FRAMES)


def test_fp16_variant_is_within_its_gate(card: ModelCard, evaluate: object, tmp_path: Path) -> None:
    variant = tmp_path / "fp16.onnx"
    onnx.save(convert_fp16(onnx.load(str(card.onnx))), str(variant))
    result = gate("fp16", card.onnx, variant, evaluate, GATE_LIMITS)  # type: ignore[arg-type]
    assert result.baseline_pq > 20.0  # a trained model, not noise
    assert result.passed, result.summary()


def test_int8_variant_is_within_its_gate(card: ModelCard, evaluate: object, tmp_path: Path) -> None:
    variant = tmp_path / "int8.onnx"
    quantize_int8(card.model_file, variant, calibration_reader(card, "synth", 48))
    result = gate("int8", card.onnx, variant, evaluate, GATE_LIMITS)  # type: ignore[arg-type]
    assert result.passed, result.summary()
