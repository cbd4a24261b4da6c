"""The Engine protocol, one contract for every backend, opened by name through the registry.

onnxruntime runs for real; tensorrt runs on tests/trt_fakes.py (TensorRT cannot be installed
here; pycuda is real where a GPU is); onnxruntime-gpu runs only where its GPU providers exist.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from perception.core.errors import ModelMismatchError
from perception.inference.engine import Engine, EngineOptions, available_engines, open_engine
from perception.inference.errors import EngineError
from tests import trt_fakes
from tests.test_trt_engine import REAL_GPU, small_model

HAS_ORT_GPU = any(p in ort.get_available_providers() for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
BACKENDS = [
    "onnxruntime",
    "tensorrt",
    pytest.param("onnxruntime-gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not HAS_ORT_GPU, reason="onnxruntime-gpu not installed (CPU onnxruntime here; see docs/tensorrt.md)")]),
]


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Engine]:
    name = request.param
    if name == "tensorrt":
        if not REAL_GPU:
            for module_name, module in trt_fakes.fake_pycuda().items():
                monkeypatch.setitem(sys.modules, module_name, module)
        monkeypatch.setitem(sys.modules, "tensorrt", trt_fakes.make_fake_tensorrt())
    model = small_model(tmp_path / "small.onnx")
    opened = open_engine(name, model, EngineOptions(cache_dir=tmp_path / "cache"))
    yield opened
    opened.close()


def test_registry_names_every_backend() -> None:
    assert {"onnxruntime", "tensorrt", "onnxruntime-gpu"} <= set(available_engines())
    with pytest.raises(EngineError, match="choose one of"):
        open_engine("tensorrtt", Path("x.onnx"))


def test_is_an_engine_with_named_specs(engine: Engine) -> None:
    assert isinstance(engine, Engine)
    assert [(t.name, t.shape, t.dtype) for t in engine.inputs] == [("image", (1, 3, 8, 8), "float32")]
    assert {t.name: (t.shape, t.dtype) for t in engine.outputs} == {
        "logits": ((1, 4, 8, 8), "float32"), "heat": ((1, 1, 8, 8), "float32")}


def test_infer_returns_every_output_with_its_spec(engine: Engine) -> None:
    image = np.random.default_rng(3).random((1, 3, 8, 8), dtype=np.float32)
    out = engine.infer({"image": image})
    assert set(out) == {t.name for t in engine.outputs}
    for spec in engine.outputs:
        assert out[spec.name].shape == spec.shape and out[spec.name].dtype == np.dtype(spec.dtype)
    heat = out["heat"]
    np.testing.assert_allclose(heat, 1 / (1 + np.exp(-image.sum(axis=1, keepdims=True))), rtol=1e-5)


def test_bad_feeds_are_model_mismatches(engine: Engine) -> None:
    with pytest.raises(ModelMismatchError):
        engine.infer({"image": np.zeros((1, 3, 8, 8), np.float64)})
    with pytest.raises(ModelMismatchError):
        engine.infer({"wrong_name": np.zeros((1, 3, 8, 8), np.float32)})


def test_context_manager_closes(engine: Engine) -> None:
    with engine as same:
        assert same is engine
