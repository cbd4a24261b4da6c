"""The shared preprocess -> engine -> decode path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import numpy as np

from perception.core.frame import StageStamps
from perception.core.tensors import TensorSpec
from perception.inference.engine import EngineOptions
from perception.inference.onnxruntime import OrtEngine
from perception.models.card import load_card
from perception.runtime.pipeline import Pipeline
from tests.onnx_models import scene, tiny_panoptic


class BufferReusingEngine:
    """Behaves like TensorRT's runtime: outputs live in host buffers that the next call overwrites."""

    name = "reusing"

    def __init__(self, inner: OrtEngine) -> None:
        self.inner = inner
        self.buffers: dict[str, np.ndarray] = {}

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.inner.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.inner.outputs

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, array in self.inner.infer(feeds).items():
            self.buffers.setdefault(name, np.empty_like(array))[...] = array
        return self.buffers

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> BufferReusingEngine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def test_outputs_of_a_buffer_reusing_engine_survive_the_next_inference(tmp_path: Path) -> None:
    card = load_card(tiny_panoptic(tmp_path))
    pipeline = Pipeline(card, BufferReusingEngine(OrtEngine(card.model_file, EngineOptions(threads=1))))
    two_cars = pipeline.infer(scene(cars=2), StageStamps())
    pipeline.infer(scene(cars=0), StageStamps())  # would overwrite the first frame's outputs in place
    decoded = pipeline.decode(two_cars, StageStamps())
    assert int(decoded.segments.is_thing.sum()) == 2


def test_process_stamps_every_stage_in_order(tmp_path: Path) -> None:
    with Pipeline(load_card(tiny_panoptic(tmp_path)), OrtEngine(tmp_path / "tiny.onnx")) as pipeline:
        stamps = StageStamps()
        result = pipeline.process(scene(), stamps)
    assert list(stamps.stamps) == ["preprocess", "inference", "handoff", "postprocess"]
    assert list(stamps.stamps.values()) == sorted(stamps.stamps.values())
    assert result.shape == (96, 128)
