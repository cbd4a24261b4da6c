"""The FP16/INT8 gate for a user's own model: the variant against the FP32 model's own outputs on
the user's frames (issue 21, item 8), not against synthetic drives it has no classes for."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.cli import main
from tests.test_precision_transforms import H, W, seg_net


@pytest.fixture(autouse=True)
def _no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def _own_model(folder: Path, classes: int) -> Path:
    """A model of the user's: its own classes, no `domain = "synthetic"` in its card."""
    folder.mkdir(parents=True, exist_ok=True)
    model = seg_net(folder / "mine.onnx", classes=classes)
    entries = "".join(f'\n[[classes]]\nid = {i}\nname = "c{i}"\nthing = false\n' for i in range(classes))
    model.with_suffix(".toml").write_text(
        f'name = "mine"\nonnx = "mine.onnx"\ndecoder = "semantic"\n[input]\nname = "image"\n'
        f'width = {W}\nheight = {H}\n{entries}')
    return model


def _textured(folder: Path, count: int = 12) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        cells = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.resize(cells, (96, 64), interpolation=cv2.INTER_NEAREST))
    return folder


def _args(model: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["build-engine", str(model), "--cache-dir", str(tmp_path / "cache"), *extra]


@pytest.mark.parametrize("classes", [3, 10])
def test_without_frames_the_synthetic_gate_is_not_used_for_an_own_model(
        tmp_path: Path, classes: int, capsys: pytest.CaptureFixture[str]) -> None:
    model = _own_model(tmp_path / "m", classes)
    assert main(_args(model, tmp_path, "--precision", "fp16")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a synthetic-domain model" in err[0] and "--frames" in err[0]
    assert main(_args(model, tmp_path, "--precision", "fp16", "--force")) == 0  # accepted, but said unscored
    assert "variant accepted unscored because of --force" in capsys.readouterr().err


def test_fp16_of_an_own_model_is_gated_against_its_fp32_outputs(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    model = _own_model(tmp_path / "m", 10)
    frames = _textured(tmp_path / "frames")
    assert main(_args(model, tmp_path, "--precision", "fp16", "--frames", f"images:{frames}")) == 0
    out = capsys.readouterr().out
    gate_line = next(line for line in out.splitlines() if line.startswith("gate:"))
    assert "vs FP32 100.00" in gate_line and "within the gate of 0.3" in gate_line
    assert "against FP32's own outputs on 12 frames" in gate_line and "mask IoU" in gate_line
    assert "score drift" in gate_line


def test_a_badly_calibrated_int8_variant_of_an_own_model_is_refused(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Calibrated on black frames, gated on textured ones: its activations clip, and the gate sees it."""
    model = _own_model(tmp_path / "m", 10)
    frames = _textured(tmp_path / "frames")
    black = tmp_path / "black"
    black.mkdir()
    for i in range(4):
        cv2.imwrite(str(black / f"{i}.png"), np.full((64, 96, 3), 3, np.uint8))
    bad = _args(model, tmp_path, "--precision", "int8", "--calib", str(black), "--calib-method", "percentile",
                "--frames", f"images:{frames}")
    assert main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the int8 variant loses too much accuracy" in err[0]


def test_gate_frames_must_be_a_replay_with_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _own_model(tmp_path / "m", 3)
    assert main(_args(model, tmp_path, "--precision", "fp16", "--frames", "camera:0")) == 2
    assert "is a live source" in capsys.readouterr().err
    assert main(_args(model, tmp_path, "--precision", "fp16", "--frames", str(tmp_path / "none.mcap"))) == 2
    assert "none.mcap' does not exist" in capsys.readouterr().err
