"""`perception build-engine` and `perception engines` end to end: variants, gate, plan, cache listing."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from perception.cli import main
from perception.inference.plan_cache import PlanCache
from perception.inference.tensorrt import variant_path
from tests import trt_fakes
from tests.test_precision_transforms import H, W, seg_net
from tests.test_trt_engine import REAL_GPU

CARD = """
name = "seg-test"
domain = "synthetic"
onnx = "seg.onnx"
decoder = "semantic"
[input]
name = "image"
width = {w}
height = {h}
""" + "".join(f"""
[[classes]]
id = {i}
name = "{name}"
thing = {str(i >= 5).lower()}
""" for i, name in enumerate(("road", "sidewalk", "vegetation", "sky", "building", "car", "person", "sign")))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = seg_net(tmp_path / "seg.onnx", classes=8)
    path.with_suffix(".toml").write_text(CARD.format(w=W, h=H))
    return path


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    if not REAL_GPU:
        for name, module in trt_fakes.fake_pycuda().items():
            monkeypatch.setitem(sys.modules, name, module)
    trt = trt_fakes.make_fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def scored(monkeypatch: pytest.MonkeyPatch, fp32: float, variant: float) -> None:
    """An evaluation stack that scores FP32 and any variant with fixed PQs (the gate's input)."""
    module = types.ModuleType("perception.tools.accuracy")

    def pq_evaluator(card: object, frames: int) -> object:
        return lambda path: fp32 if Path(path).name == "seg.onnx" else variant

    module.pq_evaluator = pq_evaluator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "perception.tools.accuracy", module)


@pytest.mark.usefixtures("no_tensorrt")
def test_fp32_without_tensorrt_stops_after_onnx_stage(model: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build-engine", str(model), "--precision", "fp32", "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "ONNX stage: FP32" in out
    assert "TensorRT stage skipped" in out and "perception-node[tensorrt]" in out


@pytest.mark.usefixtures("no_tensorrt")
def test_fp16_gate_refuses_and_says_by_how_much(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    scored(monkeypatch, fp32=70.0, variant=69.5)
    cache = tmp_path / "c"
    assert main(["build-engine", str(model), "--precision", "fp16", "--cache-dir", str(cache)]) == 2
    err = capsys.readouterr().err
    assert "over by 0.20 PQ" in err and "--force" in err
    assert not variant_path(model, "fp16", cache).exists()  # a refused variant is not installed
    assert main(["build-engine", str(model), "--precision", "fp16", "--cache-dir", str(cache), "--force"]) == 0
    target = variant_path(model, "fp16", cache)
    assert target.exists()
    record = json.loads(target.with_suffix(".gate.json").read_text())
    assert record["passed"] is False and record["forced"] is True
    assert record["baseline_pq"] == 70.0 and record["variant_pq"] == 69.5


@pytest.mark.usefixtures("no_tensorrt")
def test_int8_within_gate_calibrates_on_synthetic_frames(model: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    scored(monkeypatch, fp32=70.0, variant=69.4)
    cache = tmp_path / "c"
    assert main(["build-engine", str(model), "--precision", "int8", "--calib", "synth", "--calib-frames", "3",
                 "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "calibrated on 3 frames from synth" in out
    assert "within the gate of 1.0" in out
    assert variant_path(model, "int8", cache).exists()


@pytest.mark.usefixtures("no_tensorrt")
def test_without_evaluation_stack_the_gate_needs_force(model: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "perception.tools.accuracy", None)
    args = ["build-engine", str(model), "--precision", "fp16", "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 2
    assert "accuracy gate cannot run" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert "variant accepted unscored" in capsys.readouterr().err


@pytest.mark.usefixtures("no_tensorrt")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_without_onnx_the_variant_stage_gives_the_install_hint(model: Path, tmp_path: Path, precision: str,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if `onnx` were not installed
    args = ["build-engine", str(model), "--precision", precision, "--calib-frames", "2",
            "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'onnx' package, which is not installed" in err[0] and "pip install" in err[0]


def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build-engine", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    lonely = seg_net(tmp_path / "lonely.onnx")
    assert main(["build-engine", str(lonely), "--precision", "int8"]) == 2
    assert "no model card" in capsys.readouterr().err
    card = tmp_path / "seg.toml"
    card.write_text(CARD.format(w=W, h=H))
    seg_net(tmp_path / "seg.onnx")
    assert main(["build-engine", str(card), "--precision", "int8", "--calib", str(tmp_path / "nope"),
                 "--force", "--cache-dir", str(tmp_path / "c")]) == 2
    assert "is not 'synth', a drive file or an image folder" in capsys.readouterr().err


def test_full_build_then_list_and_clear(model: Path, tmp_path: Path, fake_gpu: types.ModuleType,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    scored(monkeypatch, fp32=70.0, variant=69.9)
    cache = tmp_path / "c"
    assert main(["build-engine", str(model), "--precision", "fp16", "--cache-dir", str(cache)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Tactic selection (30 steps)" in captured.err and "Tactic selection: 30/30" in captured.err  # progress
    assert "TensorRT stage: plan built" in out and "semantic: [1, 8, 16, 24] float32" in out
    assert main(["build-engine", str(model), "--precision", "fp16", "--cache-dir", str(cache)]) == 0
    assert "TensorRT stage: plan hit" in capsys.readouterr().out  # the variant is deterministic: same bytes, same key
    assert len(fake_gpu.builds) == 1
    assert main(["engines", "list", "--cache-dir", str(cache)]) == 0
    listing = capsys.readouterr().out
    assert "1 plan(s)" in listing and "fp16" in listing and "TensorRT 10.3.0" in listing
    [entry] = PlanCache(cache).entries()
    entry.plan_path.write_bytes(b"tampered")
    assert main(["engines", "list", "--cache-dir", str(cache)]) == 1
    assert "BAD: plan hash does not match its sidecar" in capsys.readouterr().out
    assert main(["engines", "clear", "--cache-dir", str(cache)]) == 0
    assert "removed 1 plan(s)" in capsys.readouterr().out
    assert main(["engines", "list", "--cache-dir", str(cache)]) == 0
    assert "no plans" in capsys.readouterr().out
