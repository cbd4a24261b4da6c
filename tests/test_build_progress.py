"""The builder's completed fraction from TensorRT's IProgressMonitor calls, and the swappable engine."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from perception.core.errors import ModelMismatchError
from perception.inference.engine import EngineOptions, open_engine
from perception.inference.swappable import SwappableEngine
from perception.inference.trt_build import make_progress_monitor
from tests import trt_fakes
from tests.onnx_models import tiny_panoptic


def test_fraction_follows_nested_phases_and_never_goes_back() -> None:
    seen: list[float] = []
    printed = io.StringIO()
    monitor = make_progress_monitor(trt_fakes.make_fake_tensorrt(), printed, seen.append)
    monitor.phase_start("Building engine", None, 4)
    monitor.phase_start("Graph optimization", "Building engine", 10)
    for step in range(5):
        monitor.step_complete("Graph optimization", step)
    assert seen[-1] == pytest.approx(0.5 / 4)  # half of the first of four top-level steps
    for step in range(5, 10):
        monitor.step_complete("Graph optimization", step)
    monitor.phase_finish("Graph optimization")
    monitor.step_complete("Building engine", 0)
    assert seen[-1] == pytest.approx(1 / 4)
    monitor.phase_start("Tactic selection", "Building engine", 100)  # a new sub-phase starts at its own 0
    monitor.step_complete("Tactic selection", 9)
    assert seen[-1] == pytest.approx((1 + 0.1) / 4)
    monitor.phase_finish("Tactic selection")  # early, as TensorRT may: the fraction stays where it was
    monitor.phase_finish("Building engine")
    assert seen[-1] == pytest.approx((1 + 0.1) / 4) and seen == sorted(seen)
    assert "Building engine done in" in printed.getvalue()


def test_without_a_stream_only_the_fraction_is_reported() -> None:
    seen: list[float] = []
    monitor = make_progress_monitor(trt_fakes.make_fake_tensorrt(), None, seen.append)
    monitor.phase_start("Building engine", None, 2)
    monitor.step_complete("Building engine", 0)
    monitor.step_complete("Building engine", 1)
    monitor.phase_finish("Building engine")
    assert seen == [0.5, 1.0]


def test_swap_happens_at_the_next_inference_and_closes_the_old_engine(tmp_path: Path) -> None:
    from perception.models.card import load_card

    onnx = load_card(tiny_panoptic(tmp_path)).model_file
    first, second = open_engine("onnxruntime", onnx), open_engine("onnxruntime", onnx)
    swappable = SwappableEngine(first, keep_samples=2)
    swappable.recording = True
    feeds = {"image": np.zeros((1, 3, 48, 64), np.float32)}
    before = swappable.infer(feeds)
    swapped: list[str] = []
    swappable.offer(second, lambda old: swapped.append(old.name))
    assert swappable.current is first and not swapped, "offer() must not swap outside infer()"
    after = swappable.infer(feeds)
    assert swappable.current is second and swapped == ["onnxruntime"]
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert len(swappable.samples()) == 2
    swappable.close()


def test_an_engine_with_other_outputs_is_refused(tmp_path: Path) -> None:
    from perception.models.card import load_card

    tiny = load_card(tiny_panoptic(tmp_path / "a")).model_file
    other = load_card(tiny_panoptic(tmp_path / "b", width=32, height=32)).model_file
    with SwappableEngine(open_engine("onnxruntime", tiny, EngineOptions())) as swappable:
        candidate = open_engine("onnxruntime", other)
        with pytest.raises(ModelMismatchError, match="has I/O"):
            swappable.offer(candidate, lambda old: None)
        candidate.close()
