"""TensorRT backend around its two native dependencies.

TensorRT cannot be installed on these machines, so tests/trt_fakes.py stands in for it. pycuda
is the real one where it imports and a GPU is present (the GPU machine), the fake elsewhere.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from perception.core.errors import MissingDependencyError, ModelMismatchError
from perception.inference.cuda import CudaDevice, CudaError, DeviceBuffer
from perception.inference.engine import EngineOptions
from perception.inference.errors import EngineError
from perception.inference.plan_cache import CorruptPlanError, PlanCache
from perception.inference.tensorrt import TrtEngine, variant_path
from perception.inference.trt_build import BuildOptions, build_plan, onnx_input_shapes
from tests import trt_fakes


def small_model(path: Path, batch: int | str = 1) -> Path:
    """image [B,3,8,8] -> logits = conv1x1(image), heat = sigmoid(sum of channels)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(4, 3, 1, 1)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "b")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["logits"]),
        helper.make_node("ReduceSum", ["image", "axes"], ["summed"], keepdims=1),
        helper.make_node("Sigmoid", ["summed"], ["heat"]),
    ]
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4, 8, 8]),
         helper.make_tensor_value_info("heat", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [weight, bias, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _real_gpu_pycuda() -> bool:
    if importlib.util.find_spec("pycuda") is None:
        return False
    import pycuda.driver as drv

    try:
        drv.init()
        return bool(drv.Device.count() > 0)
    except drv.Error:
        return False


REAL_GPU = _real_gpu_pycuda()  # decided before any test puts the fake pycuda in sys.modules


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    if not REAL_GPU:
        for name, module in trt_fakes.fake_pycuda().items():
            monkeypatch.setitem(sys.modules, name, module)
    trt = trt_fakes.make_fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return small_model(tmp_path / "small.onnx")


def reference(model: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"image": image}), strict=True))


def frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.random((1, 3, 8, 8), dtype=np.float32) for _ in range(n)]


def test_infer_matches_onnxruntime_and_plan_is_cached(fake_trt: ModuleType, model: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    options = EngineOptions(cache_dir=tmp_path / "cache")
    with TrtEngine(model, options) as engine:
        assert engine.plan.status == "built"
        assert [t.name for t in engine.inputs] == ["image"]
        assert {t.name: t.shape for t in engine.outputs} == {"logits": (1, 4, 8, 8), "heat": (1, 1, 8, 8)}
        image = frames(1)[0]
        out = engine.infer({"image": image})
        for name, expected in reference(model, image).items():
            np.testing.assert_allclose(out[name], expected, rtol=1e-6)
        assert engine.last_timing is not None and engine.last_timing.total_ms >= 0
    assert "Building engine" in capsys.readouterr().err  # the progress monitor printed the phases
    with TrtEngine(model, options) as again:
        assert again.plan.status == "hit"
    [build] = fake_trt.builds
    assert build["flags"] == 1 << 5  # created strongly typed (TensorRT 10 needs the flag)
    assert build["workspace"] == 1024 << 20
    assert len(PlanCache(tmp_path / "cache").entries()) == 1


def test_timing_cache_persists_between_builds(fake_trt: ModuleType, model: Path, tmp_path: Path) -> None:
    options = EngineOptions(cache_dir=tmp_path / "cache")
    TrtEngine(model, options, build=BuildOptions(optimization_level=3)).close()
    TrtEngine(model, options, build=BuildOptions(optimization_level=5)).close()  # new key -> new build
    assert [b["opt_level"] for b in fake_trt.builds] == [3, 5]
    assert [b["timing_entries_before"] for b in fake_trt.builds] == [0, 1]  # second build read the first's
    assert len(list((tmp_path / "cache").glob("timing-*.cache"))) == 1


def test_submit_collect_double_buffering(fake_trt: ModuleType, model: Path, tmp_path: Path) -> None:
    images = frames(5)
    expected = [reference(model, f)["logits"] for f in images]
    with TrtEngine(model, EngineOptions(cache_dir=tmp_path)) as engine:
        got = []
        engine.submit({"image": images[0]})
        for image in images[1:]:
            engine.submit({"image": image})  # frame N+1 runs while N is read below
            assert engine.in_flight == 2
            got.append(engine.collect()["logits"].copy())
        got.append(engine.collect()["logits"].copy())
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
        engine.submit({"image": images[0]})
        engine.submit({"image": images[1]})
        with pytest.raises(EngineError, match="already in flight"):
            engine.submit({"image": images[2]})
        with pytest.raises(EngineError, match="uncollected"):
            engine.infer({"image": images[2]})
        engine.collect()
        engine.collect()
        with pytest.raises(EngineError, match="nothing submitted"):
            engine.collect()


def test_wrong_input_is_a_model_mismatch(fake_trt: ModuleType, model: Path, tmp_path: Path) -> None:
    with TrtEngine(model, EngineOptions(cache_dir=tmp_path)) as engine:
        with pytest.raises(ModelMismatchError, match="expects"):
            engine.infer({"image": np.zeros((1, 3, 4, 4), np.float32)})
        with pytest.raises(ModelMismatchError, match="got nothing"):
            engine.infer({})


def test_close_frees_everything_and_use_after_close_is_an_error(fake_trt: ModuleType, model: Path,
                                                                tmp_path: Path) -> None:
    engine = TrtEngine(model, EngineOptions(cache_dir=tmp_path))
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(EngineError, match="after close"):
        engine.infer({"image": frames(1)[0]})
    if not REAL_GPU:
        assert trt_fakes.live_device_bytes() == 0


def test_dynamic_batch_gets_a_profile(fake_trt: ModuleType, tmp_path: Path) -> None:
    model = small_model(tmp_path / "dyn.onnx", batch="N")
    assert onnx_input_shapes(model.read_bytes()) == {"image": (1, 3, 8, 8)}
    with TrtEngine(model, EngineOptions(cache_dir=tmp_path / "c")) as engine:
        assert engine.inputs[0].shape == (1, 3, 8, 8)
        image = frames(1)[0]
        np.testing.assert_allclose(engine.infer({"image": image})["heat"], reference(model, image)["heat"],
                                   rtol=1e-6)


def test_corrupted_plan_is_rebuilt_or_refused(fake_trt: ModuleType, model: Path, tmp_path: Path) -> None:
    options = EngineOptions(cache_dir=tmp_path)
    with TrtEngine(model, options) as engine:
        path = engine.plan.path
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptPlanError):
        TrtEngine(model, options, rebuild_corrupt=False)
    with TrtEngine(model, options) as engine:
        assert engine.plan.status == "rebuilt"


def test_plan_tensorrt_rejects_is_a_typed_error(fake_trt: ModuleType, model: Path, tmp_path: Path) -> None:
    """A plan whose hash checks out but that this TensorRT cannot load (e.g. restored from a backup)."""
    options = EngineOptions(cache_dir=tmp_path)
    with TrtEngine(model, options) as engine:
        key = engine.key
    PlanCache(tmp_path).store(key, b"FAKETRT1" + b"\x02\x00\x00\x00{}" + b"junk")
    with pytest.raises(EngineError, match="cannot load the cached plan"):
        TrtEngine(model, options)


def test_unparsable_onnx_is_a_typed_error(fake_trt: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="not a valid ONNX"):
        onnx_input_shapes(b"not a model")
    with pytest.raises(EngineError, match="cannot parse"):
        build_plan(fake_trt, b"not a model", {}, BuildOptions(), None, progress=io.StringIO())


def test_missing_variant_names_the_build_command(fake_trt: ModuleType, model: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="build-engine") as info:
        TrtEngine(model, EngineOptions(precision="fp16", cache_dir=tmp_path))
    assert str(variant_path(model, "fp16", tmp_path)) in str(info.value)
    with pytest.raises(EngineError, match="unknown precision"):
        TrtEngine(model, EngineOptions(precision="fp8", cache_dir=tmp_path))


def test_missing_tensorrt_names_the_extra(monkeypatch: pytest.MonkeyPatch, model: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"perception-node\[tensorrt\]") as info:
        TrtEngine(model)
    assert info.value.package == "tensorrt"


def test_missing_pycuda_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(MissingDependencyError, match=r"perception-node\[tensorrt\]") as info:
        CudaDevice(0)
    assert info.value.package == "pycuda"


def test_cuda_failures_are_typed(fake_trt: ModuleType) -> None:
    with pytest.raises(CudaError, match="does not exist"):
        CudaDevice(7)
    with CudaDevice(0) as device:
        _free, total = device.memory_info()
        with pytest.raises(CudaError, match="GPU memory") as info:
            DeviceBuffer(device, total * 4)
        assert "free GPU memory" in info.value.fix
