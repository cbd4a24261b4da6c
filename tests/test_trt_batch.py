"""TensorRT with several cameras: a plan's optimization profile spans the node's batch.

TensorRT is tests/trt_fakes.py, which behaves as TensorRT 10 does where batches are concerned:
a dynamic input needs a profile to build, the context runs the input shape last set with
set_input_shape, and a shape outside the profile's min..max is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from perception.core.errors import ModelMismatchError
from perception.inference.engine import EngineOptions
from perception.inference.errors import EngineError
from perception.inference.plan_cache import PlanCache
from perception.inference.tensorrt import TrtEngine
from perception.inference.trt_build import BuildOptions, build_plan, onnx_input_shapes
from perception.runtime.config import NodeConfig, load_launch
from tests.lifecycle_support import check_contiguous, frames_after, gpu_fakes, serve_until
from tests.node_helpers import image_folder
from tests.onnx_models import tiny_panoptic
from tests.test_trt_engine import fake_trt, reference, small_model

__all__ = ["fake_trt", "gpu_fakes"]  # the fixtures, used by name
Builder = Callable[..., None]


def batch_of(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 8, 8), dtype=np.float32)


def test_a_plan_for_four_cameras_runs_every_batch_from_one_to_four(fake_trt: ModuleType, tmp_path: Path) -> None:
    model = small_model(tmp_path / "dyn.onnx", batch="N")
    with TrtEngine(model, EngineOptions(cache_dir=tmp_path / "c", max_batch=4)) as engine:
        [build] = fake_trt.builds
        assert build["profiles"] == [{"image": [[1, 3, 8, 8], [4, 3, 8, 8], [4, 3, 8, 8]]}]  # min, opt, max
        assert engine.max_batch == 4
        assert engine.inputs[0].shape == ("batch", 3, 8, 8)  # symbolic, like ONNX Runtime's on this graph
        assert {t.name: t.shape for t in engine.outputs} == {"logits": ("batch", 4, 8, 8), "heat": ("batch", 1, 8, 8)}
        for n in (4, 1, 3, 3, 4, 2):  # the context must be told every change of batch
            images = batch_of(n, seed=n)
            out = engine.infer({"image": images})
            for name, expected in reference(model, images).items():
                assert out[name].shape == expected.shape
                np.testing.assert_allclose(out[name], expected, rtol=1e-6)
        assert [e["image"][0] for e in fake_trt.executions] == [4, 1, 3, 3, 4, 2]
        with pytest.raises(ModelMismatchError, match=r"batch of 5 frames is outside the plan.s profile 1\.\.4"):
            engine.infer({"image": batch_of(5)})
    with pytest.raises(EngineError, match="max batch 0 is outside"):
        BuildOptions(max_batch=0)


def test_batches_of_different_sizes_in_flight_each_get_their_own_outputs(fake_trt: ModuleType,
                                                                       tmp_path: Path) -> None:
    model = small_model(tmp_path / "dyn.onnx", batch="N")
    with TrtEngine(model, EngineOptions(cache_dir=tmp_path, max_batch=3)) as engine:
        two, three = batch_of(2, 1), batch_of(3, 2)
        engine.submit({"image": two})
        engine.submit({"image": three})  # runs while the batch of two is read
        first = engine.collect()["logits"].copy()
        second = engine.collect()["logits"].copy()
    np.testing.assert_allclose(first, reference(model, two)["logits"], rtol=1e-6)
    np.testing.assert_allclose(second, reference(model, three)["logits"], rtol=1e-6)


def test_a_plan_built_for_one_frame_is_not_reused_for_four(fake_trt: ModuleType, tmp_path: Path) -> None:
    model = small_model(tmp_path / "dyn.onnx", batch="N")
    cache = tmp_path / "cache"
    with TrtEngine(model, EngineOptions(cache_dir=cache)) as one:
        assert one.plan.status == "built" and one.max_batch == 1 and one.inputs[0].shape == (1, 3, 8, 8)
        with pytest.raises(ModelMismatchError, match="expects"):
            one.infer({"image": batch_of(2)})
    with TrtEngine(model, EngineOptions(cache_dir=cache, max_batch=4)) as four:
        assert four.plan.status == "built" and four.key != one.key
        assert dict(four.key.builder_options)["max_batch"] == "4"
    with TrtEngine(model, EngineOptions(cache_dir=cache, max_batch=4)) as again:
        assert again.plan.status == "hit"
    assert [b["profiles"][0]["image"][2][0] for b in fake_trt.builds] == [1, 4]


def test_a_fixed_batch_graph_has_no_profile_and_one_plan_for_any_camera_count(fake_trt: ModuleType,
                                                                             tmp_path: Path) -> None:
    model = small_model(tmp_path / "fixed.onnx")
    with TrtEngine(model, EngineOptions(cache_dir=tmp_path)) as one:
        assert one.max_batch == 1
    with TrtEngine(model, EngineOptions(cache_dir=tmp_path, max_batch=4)) as four:
        assert four.plan.status == "hit" and four.key == one.key and four.max_batch == 1
    assert fake_trt.builds[0]["profiles"] == []


def test_the_fake_refuses_what_tensorrt_refuses(fake_trt: ModuleType, tmp_path: Path) -> None:
    """The contract the tests above rely on, checked on the fake itself."""
    model = small_model(tmp_path / "dyn.onnx", batch="N").read_bytes()
    shapes = onnx_input_shapes(model)
    builder = fake_trt.Builder(fake_trt.Logger())
    network = builder.create_network(0)
    assert fake_trt.OnnxParser(network, fake_trt.Logger()).parse(model)
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None  # no profile
    plan = build_plan(fake_trt, model, shapes, BuildOptions(max_batch=2), None)
    engine = fake_trt.Runtime(fake_trt.Logger()).deserialize_cuda_engine(plan)
    assert engine.get_tensor_shape("image") == (-1, 3, 8, 8)
    assert engine.get_tensor_profile_shape("image", 0) == [(1, 3, 8, 8), (2, 3, 8, 8), (2, 3, 8, 8)]
    context = engine.create_execution_context()
    assert not context.execute_async_v3(0)  # no input shape set yet
    assert not context.set_input_shape("image", (3, 3, 8, 8))  # above the profile's max
    assert not context.set_input_shape("image", (1, 3, 4, 4))  # against the fixed dims
    assert context.set_input_shape("image", (2, 3, 8, 8))
    assert not context.set_optimization_profile_async(1, 0)  # only profile 0 exists
    profile = fake_trt.Builder(None).create_optimization_profile()
    profile.set_shape("image", (4, 3, 8, 8), (2, 3, 8, 8), (2, 3, 8, 8))
    assert fake_trt.Builder(None).create_builder_config().add_optimization_profile(profile) == -1  # min > opt


def _two_camera_lifecycle(folder: Path, cache: Path) -> NodeConfig:
    """Two cameras on a dynamic-batch model, engine tensorrt serving on onnxruntime until the plan is ready."""
    card = tiny_panoptic(folder / "model", batch="batch")
    tables = "".join(f'[[camera]]\nname = "{name}"\nuri = "images:{image_folder(folder / name, 400)}?fps=20"\n\n'
                     for name in ("cam0", "cam1"))
    launch = folder / "two.toml"
    launch.write_text(f'''[model]
card = "{card}"
threads = 1
warmup_runs = 1
engine = "tensorrt"
fallback = "onnxruntime"
cache_dir = "{cache}"
batch_timeout_ms = 200

[publish]
endpoint = "ipc://{folder / 'node.sock'}"
wait_subscribers = 1
sndhwm = 1000

{tables}''')
    return load_launch(launch)


def test_the_background_builder_builds_the_plan_for_one_frame_per_camera(tmp_path: Path, gpu_fakes: Builder) -> None:
    cache = tmp_path / "cache"
    heard = serve_until(_two_camera_lifecycle(tmp_path, cache), frames_after("switched from onnxruntime", 8))
    assert heard.error is None
    check_contiguous(heard)
    [entry] = [e for e in PlanCache(cache).entries() if not e.problem]
    assert entry.key is not None and dict(entry.key.builder_options)["max_batch"] == "2"
    trt = sys.modules["tensorrt"]
    plan = trt.Runtime(trt.Logger()).deserialize_cuda_engine(entry.plan_path.read_bytes())
    assert [s[0] for s in plan.get_tensor_profile_shape("image", 0)] == [1, 2, 2]
    # after the swap both cameras' frames went through the plan together
    assert any(e["image"][0] == 2 for e in trt.executions), [e["image"][0] for e in trt.executions]
