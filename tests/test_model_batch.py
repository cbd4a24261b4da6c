"""The shipped model's dynamic batch axis, and the graph rewrite that gave it one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from perception.core.errors import ModelMismatchError
from perception.models.card import load_card
from perception.runtime.config import DEFAULT_CARD
from perception.runtime.pipeline import Pipeline
from perception.tools.batch_axis import make_batch_dynamic


def _session(path: Path | bytes) -> ort.InferenceSession:
    return ort.InferenceSession(str(path) if isinstance(path, Path) else path, providers=["CPUExecutionProvider"])


def test_the_shipped_model_gives_a_batch_of_four_the_outputs_of_four_singles() -> None:
    pipeline = Pipeline.from_card(load_card(DEFAULT_CARD))
    assert pipeline.max_batch is None  # a dynamic batch axis
    spec = pipeline.card.input
    x = np.random.default_rng(1).random((4, 3, spec.height, spec.width), dtype=np.float32)
    session = _session(pipeline.card.model_file)
    four = session.run(None, {spec.name: x})
    for i in range(4):
        one = session.run(None, {spec.name: x[i:i + 1]})
        for batched, single in zip(four, one, strict=True):
            np.testing.assert_allclose(batched[i:i + 1], single, rtol=0, atol=1e-5)
    pipeline.close()


def _resize_graph(path: Path, extra: list[onnx.NodeProto] | None = None) -> Path:
    """conv -> Resize with full (N, C, H, W) sizes, as the exporter writes it."""
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"]),
             helper.make_node("Resize", ["c", "", "", "sizes"], ["out"], mode="linear",
                              coordinate_transformation_mode="half_pixel"), *(extra or [])]
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 10])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 12, 16])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1, 4, 12, 16], np.int64), "sizes"),
         numpy_helper.from_array(np.array([1, -1], np.int64), "shape")])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_resize_sizes_become_scales_and_the_batch_axis_symbolic(tmp_path: Path) -> None:
    source = _resize_graph(tmp_path / "static.onnx")
    target = make_batch_dynamic(source, tmp_path / "dynamic.onnx")
    dims = [d.dim_param or d.dim_value for d in onnx.load(target).graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 8, 10]
    x = np.random.default_rng(2).random((3, 3, 8, 10), dtype=np.float32)
    static, dynamic = _session(source), _session(target)
    batched = dynamic.run(None, {"image": x})[0]
    assert batched.shape == (3, 4, 12, 16)
    for i in range(3):
        np.testing.assert_array_equal(batched[i:i + 1], static.run(None, {"image": x[i:i + 1]})[0])


def test_a_graph_whose_reshape_hard_codes_the_batch_is_refused(tmp_path: Path) -> None:
    source = _resize_graph(tmp_path / "reshape.onnx", [helper.make_node("Reshape", ["out", "shape"], ["flat"])])
    with pytest.raises(ModelMismatchError, match=r"Reshape .* may hard-code the batch"):
        make_batch_dynamic(source, tmp_path / "out.onnx")
