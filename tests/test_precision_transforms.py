"""FP16 conversion and INT8 Q/DQ quantization on small graphs, checked with ONNX Runtime; the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from perception.inference.engine import EngineOptions
from perception.inference.onnxruntime import OrtEngine
from perception.tools.precision import (
    FrameReader,
    GateResult,
    PrecisionError,
    convert_fp16,
    enforce,
    gate,
    head_nodes,
    quantize_int8,
)

H, W = 16, 24


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def seg_net(path: Path, seed: int = 0, classes: int = 5) -> Path:
    """A tiny segmentation-shaped net: normalize, conv-relu x2, upsample x2 (Resize), three heads.

    semantic = conv(features) (logits), probs = Softmax(semantic), center = Sigmoid(conv),
    pooled = ReduceMean of the features broadcast back (global context, as ASPP does).
    """
    rng = np.random.default_rng(seed)
    inits = [
        _init("mean", np.array([0.4, 0.5, 0.6], np.float32).reshape(1, 3, 1, 1)),
        _init("std", np.array([0.2, 0.25, 0.3], np.float32).reshape(1, 3, 1, 1)),
        _init("w1", (rng.normal(size=(8, 3, 3, 3)) * 0.4).astype(np.float32)),
        _init("b1", rng.normal(size=(8,)).astype(np.float32) * 0.1),
        _init("w2", (rng.normal(size=(8, 8, 3, 3)) * 0.2).astype(np.float32)),
        _init("b2", rng.normal(size=(8,)).astype(np.float32) * 0.1),
        _init("ws", (rng.normal(size=(classes, 8, 1, 1)) * 0.5).astype(np.float32)),
        _init("bs", rng.normal(size=(classes,)).astype(np.float32) * 0.1),
        _init("wc", (rng.normal(size=(1, 8, 1, 1)) * 0.5).astype(np.float32)),
        _init("scales", np.array([1, 1, 2, 2], np.float32)),
        _init("axes", np.array([2, 3], np.int64)),
    ]
    nodes = [
        helper.make_node("Sub", ["image", "mean"], ["centered"]),
        helper.make_node("Div", ["centered", "std"], ["normalized"]),
        helper.make_node("Conv", ["normalized", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("ReduceMean", ["r2", "axes"], ["pooled"], keepdims=1),
        helper.make_node("Add", ["r2", "pooled"], ["context"]),
        helper.make_node("Resize", ["context", "", "scales"], ["up"], mode="linear"),
        helper.make_node("Conv", ["up", "ws", "bs"], ["semantic"]),
        helper.make_node("Softmax", ["semantic"], ["probs"], axis=1),
        helper.make_node("Conv", ["up", "wc"], ["center_logit"]),
        helper.make_node("Sigmoid", ["center_logit"], ["center"]),
    ]
    graph = helper.make_graph(
        nodes, "seg",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("semantic", TensorProto.FLOAT, [1, classes, H, W]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, classes, H, W]),
         helper.make_tensor_value_info("center", TensorProto.FLOAT, [1, 1, H, W])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def run(path: Path, image: np.ndarray, quantize_in_float: bool = False) -> dict[str, np.ndarray]:
    with OrtEngine(path, EngineOptions(threads=1), quantize_in_float=quantize_in_float) as engine:
        return engine.infer({"image": image})


def images(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((1, 3, H, W), dtype=np.float32) for _ in range(n)]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return seg_net(tmp_path / "seg.onnx")


def test_fp16_outputs_close_to_fp32_with_float32_io(model: Path, tmp_path: Path) -> None:
    variant = tmp_path / "seg.fp16.onnx"
    onnx.save(convert_fp16(onnx.load(model)), variant)
    converted = onnx.load(variant)
    assert [i.type.tensor_type.elem_type for i in converted.graph.input] == [TensorProto.FLOAT]
    assert {o.type.tensor_type.elem_type for o in converted.graph.output} == {TensorProto.FLOAT}
    for image in images(4):
        ref, got = run(model, image), run(variant, image)
        for name in ref:
            assert got[name].dtype == np.float32
            np.testing.assert_allclose(got[name], ref[name], atol=2e-2, rtol=2e-2, err_msg=name)
        agreement = (got["semantic"].argmax(1) == ref["semantic"].argmax(1)).mean()
        assert agreement > 0.97


def test_fp16_keeps_sensitive_ops_and_resize_scales_in_fp32(model: Path) -> None:
    converted = convert_fp16(onnx.load(model))
    inits = {i.name: i.data_type for i in converted.graph.initializer}
    assert inits["w1__fp16"] == TensorProto.FLOAT16
    assert "w1" not in inits  # the float32 original is dropped once nothing reads it
    assert inits["scales"] == TensorProto.FLOAT  # Resize scales stay float32
    types = {v.name: v.type.tensor_type.elem_type for v in converted.graph.value_info}
    by_op = {n.op_type: n for n in converted.graph.node}
    for op in ("Softmax", "Sigmoid", "ReduceMean"):
        assert types.get(by_op[op].input[0]) == TensorProto.FLOAT, op  # fed float32 through a Cast
    assert types.get(by_op["Relu"].output[0]) == TensorProto.FLOAT16  # the bulk runs in float16
    resize = by_op["Resize"]
    assert types.get(resize.input[0]) == TensorProto.FLOAT16
    assert resize.input[2] == "scales"


def test_fp16_converts_constants_and_casts(tmp_path: Path) -> None:
    const = helper.make_tensor("c", TensorProto.FLOAT, [1], [2.5])
    nodes = [
        helper.make_node("Constant", [], ["k"], value=const),
        helper.make_node("Cast", ["count"], ["count_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "k"], ["scaled"]),
        helper.make_node("Add", ["scaled", "count_f"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "consts",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
         helper.make_tensor_value_info("count", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "c.onnx"
    onnx.save(convert_fp16(model), path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.array([1, 2, 3, 4], np.float32)
    [y] = session.run(None, {"x": x, "count": np.array([1, 1, 2, 2], np.int64)})
    np.testing.assert_allclose(y, x * 2.5 + [1, 1, 2, 2])


def test_int8_is_symmetric_qdq_and_close_to_fp32(model: Path, tmp_path: Path) -> None:
    variant = tmp_path / "seg.int8.onnx"
    used = quantize_int8(model, variant, FrameReader("image", images(16, seed=5)))
    assert used == 16
    quantized = onnx.load(variant)
    ops = [n.op_type for n in quantized.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    zero_points = [numpy_helper.to_array(i) for i in quantized.graph.initializer if "zero_point" in i.name]
    assert zero_points and all(zp.dtype == np.int8 and not zp.any() for zp in zero_points)  # symmetric int8
    # the heads (convs feeding outputs) stay float: their weights are not quantized
    quantized_weights = {n.input[0] for n in quantized.graph.node if n.op_type == "QuantizeLinear"}
    assert not any(name.startswith(("ws", "wc")) for name in quantized_weights)
    for image in images(4, seed=9):  # held out from calibration
        # the gate's way of running it: Q/DQ as float math, the same on every CPU
        ref, got = run(model, image), run(variant, image, quantize_in_float=True)
        agreement = (got["semantic"].argmax(1) == ref["semantic"].argmax(1)).mean()
        assert agreement > 0.97
        np.testing.assert_allclose(got["center"], ref["center"], atol=0.04)


def pointwise_net(path: Path) -> Path:
    """conv 1x1 -> relu -> conv 1x1: small enough to evaluate by hand once quantized."""
    rng = np.random.default_rng(3)
    inits = [_init("w1", rng.normal(size=(6, 3, 1, 1)).astype(np.float32)),
             _init("b1", rng.normal(size=(6,)).astype(np.float32)),
             _init("w2", rng.normal(size=(4, 6, 1, 1)).astype(np.float32))]
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["out"])]
    graph = helper.make_graph(nodes, "pointwise",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, H, W])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def spec_eval(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ONNX operator spec in numpy for the ops a quantized pointwise net has."""
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer} | dict(feeds)

    def per_axis(param: np.ndarray, node: onnx.NodeProto, rank: int) -> np.ndarray:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        return param.reshape([-1 if d == axis else 1 for d in range(rank)]) if param.ndim else param

    for node in model.graph.node:
        args = [values[name] for name in node.input if name]
        if node.op_type == "QuantizeLinear":
            x, scale, zero = args
            q = np.rint(x / per_axis(scale, node, x.ndim)) + per_axis(zero, node, x.ndim).astype(np.float32)
            out = np.clip(q, -128, 127).astype(np.int8)
        elif node.op_type == "DequantizeLinear":
            x, scale, zero = args
            out = ((x.astype(np.int32) - per_axis(zero, node, x.ndim)) * per_axis(scale, node, x.ndim))
        elif node.op_type == "Conv":  # 1x1, stride 1, no padding
            out = np.einsum("oi,nihw->nohw", args[1][:, :, 0, 0], args[0])
            if len(args) > 2:
                out = out + args[2].reshape(1, -1, 1, 1)
        elif node.op_type == "Relu":
            out = np.maximum(args[0], 0)
        else:
            raise AssertionError(f"spec_eval has no {node.op_type}")
        values[node.output[0]] = out.astype(np.float32) if out.dtype.kind == "f" else out
    return {o.name: values[o.name] for o in model.graph.output}


def test_quantize_in_float_computes_what_the_onnx_spec_says(tmp_path: Path) -> None:
    """Q/DQ as round-clip-rescale math, not the CPU's int8 kernels (which saturate on x86 without VNNI)."""
    variant = tmp_path / "pointwise.int8.onnx"
    quantize_int8(pointwise_net(tmp_path / "pointwise.onnx"), variant, FrameReader("image", images(8, seed=5)),
                  keep_heads_fp32=False)
    quantized = onnx.load(variant)
    assert {n.op_type for n in quantized.graph.node} == {"QuantizeLinear", "DequantizeLinear", "Conv", "Relu"}
    for image in images(3, seed=9):
        expected = spec_eval(quantized, {"image": image})["out"]
        np.testing.assert_allclose(run(variant, image, quantize_in_float=True)["out"], expected, atol=1e-4)


def test_head_nodes_finds_the_last_layer_of_each_branch(model: Path) -> None:
    loaded = onnx.load(model)
    for i, node in enumerate(loaded.graph.node):
        node.name = f"n{i}"
    names = {n.name: n.input[1] for n in loaded.graph.node if n.op_type == "Conv"}
    heads = head_nodes(loaded, ["Conv"])
    assert sorted(names[h] for h in heads) == ["wc", "ws"]


def test_int8_without_frames_is_refused(model: Path, tmp_path: Path) -> None:
    with pytest.raises(PrecisionError, match="no frames"):
        quantize_int8(model, tmp_path / "x.onnx", FrameReader("image", []))


def test_unknown_calibration_method(model: Path, tmp_path: Path) -> None:
    with pytest.raises(PrecisionError, match="unknown calibration method"):
        quantize_int8(model, tmp_path / "x.onnx", FrameReader("image", images(1)), method="magic")


@pytest.mark.parametrize(("precision", "baseline", "variant", "passes"), [
    ("fp16", 60.0, 59.8, True),
    ("fp16", 60.0, 59.7, True),
    ("fp16", 60.0, 59.5, False),
    ("int8", 60.0, 59.1, True),
    ("int8", 60.0, 58.7, False),
    ("int8", 60.0, 61.0, True),
])
def test_gate_limits(tmp_path: Path, precision: str, baseline: float, variant: float, passes: bool) -> None:
    scores = {tmp_path / "fp32.onnx": baseline, tmp_path / "v.onnx": variant}
    result = gate(precision, tmp_path / "fp32.onnx", tmp_path / "v.onnx", scores.__getitem__)
    assert result.passed is passes
    if passes:
        enforce(result, force=False)
    else:
        with pytest.raises(PrecisionError) as info:
            enforce(result, force=False)
        over = result.drop - result.limit
        assert f"over by {over:.2f} PQ" in str(info.value)
        assert "--force" in info.value.fix
        enforce(result, force=True)  # forced: accepted


def test_gate_on_real_outputs(model: Path, tmp_path: Path) -> None:
    """The gate with a real evaluation: agreement (0-100) of the semantic argmax with FP32's."""
    held_out = images(6, seed=42)
    reference = [run(model, image)["semantic"].argmax(1) for image in held_out]

    def evaluate(path: Path) -> float:
        return 100.0 * float(np.mean([(run(path, image)["semantic"].argmax(1) == ref).mean()
                                      for image, ref in zip(held_out, reference, strict=True)]))

    variant = tmp_path / "v.onnx"
    onnx.save(convert_fp16(onnx.load(model)), variant)
    result = gate("fp16", model, variant, evaluate, limits={"fp16": 3.0})
    assert result.baseline_pq == 100.0
    assert result.passed, result.summary()
    with pytest.raises(PrecisionError, match="no accuracy gate"):
        gate("fp32", model, variant, evaluate)


def test_gate_result_summary_reads_well() -> None:
    text = GateResult("int8", 68.2, 66.9, 1.0).summary()
    assert text == "int8: PQ 66.90 vs FP32 68.20 (drop +1.30; over by 0.30 PQ, above the gate of 1.0)"
