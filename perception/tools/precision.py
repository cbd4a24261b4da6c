"""Precision decided in the ONNX, on the CPU: FP16 by converting the graph, INT8 by Q/DQ nodes.

TensorRT 11 removed weak typing (no FP16/INT8 builder flags, no calibrators): a network runs
in the types its ONNX says. So the reduced-precision variants are ONNX files made here, which
ONNX Runtime can run and score against FP32 before a GPU ever sees them.

FP16: every float32 tensor becomes float16, except graph inputs and outputs (the card and
decoders keep speaking float32), operators whose accumulation or range needs float32
(softmax, sigmoid, exp/log, reductions, ...) and Resize's roi/scales inputs, with Cast
nodes inserted wherever a tensor crosses between the two.

INT8: ONNX Runtime's static quantization in QDQ format, symmetric int8 activations and
per-channel symmetric weights (what TensorRT's explicit quantization expects), bias left in
float, and the last layer before each output (the heads) left unquantized.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.errors import require
from perception.inference.errors import EngineError
from perception.inference.tensorrt import GATE_LIMITS as TRT_GATE_LIMITS

# Operators kept in float32 whole: wide dynamic range or long accumulations, cheap anyway.
FP32_OPS = frozenset({
    "Softmax", "LogSoftmax", "Sigmoid", "Exp", "Log", "Pow", "Erf",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceProd", "TopK", "NonMaxSuppression", "RoiAlign", "Range", "CumSum",
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike",
    "If", "Loop", "Scan",  # subgraphs are not converted
})
# (operator, input index) whose float input must stay float32 even when the operator runs in float16
FP32_INPUTS = frozenset({("Resize", 1), ("Resize", 2), ("Upsample", 1)})

# max PQ drop vs FP32 (points on a 0-100 scale); FP32 itself is not a variant, so not gated here
GATE_LIMITS = {p: limit for p, limit in TRT_GATE_LIMITS.items() if p != "fp32"}
FP16_MAX = float(np.finfo(np.float16).max)
ONNX_INSTALL = "pip install 'perception-node[tensorrt]' (or the 'tools' extra): precision variants need `onnx`"


class PrecisionError(EngineError):
    """A precision variant that cannot be made or does not meet its accuracy gate."""


def load_onnx() -> Any:
    """The `onnx` package, or the install hint (it is an optional dependency)."""
    return require("onnx", "making FP16/INT8 model variants", ONNX_INSTALL)


# ------------------------------------------------------------------------------------------ FP16


def convert_fp16(model: Any, fp32_ops: Iterable[str] = FP32_OPS) -> Any:
    """A float16 copy of an onnx.ModelProto with float32 I/O; the input model is not modified."""
    onnx = load_onnx()
    from onnx import TensorProto, helper, numpy_helper

    keep = frozenset(fp32_ops)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.output, *graph.value_info)}
    initializers = {i.name: i for i in graph.initializer}
    for name, init in initializers.items():
        types[name] = init.data_type
    FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16  # noqa: N806 - ONNX's names

    home: dict[str, int] = {}  # float tensor -> the type it has in the converted graph
    for name, elem in types.items():
        if elem == FLOAT and (name in initializers or any(i.name == name for i in graph.input)):
            home[name] = FLOAT
    converted: dict[tuple[str, int], str] = {}
    new_nodes: list[Any] = []
    new_inits: list[Any] = []

    def as_type(name: str, want: int) -> str:
        if home.get(name, want) == want:
            return name
        if (name, want) not in converted:
            suffix = "fp16" if want == HALF else "fp32"
            new_name = f"{name}__{suffix}"
            if name in initializers and want == HALF:
                array = numpy_helper.to_array(initializers[name])
                new_inits.append(numpy_helper.from_array(np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16),
                                                         new_name))
            else:
                new_nodes.append(helper.make_node("Cast", [name], [new_name], to=want, name=f"cast_{new_name}"))
            home[new_name] = want
            converted[(name, want)] = new_name
        return converted[(name, want)]

    for node in graph.node:
        float_outputs = [o for o in node.output if o and types.get(o) == FLOAT]
        unknown_outputs = [o for o in node.output if o and o not in types]
        in_fp32 = node.op_type in keep or bool(unknown_outputs) or any(a.type == a.GRAPH for a in node.attribute)
        for index, name in enumerate(node.input):
            if name and types.get(name) == FLOAT:
                want = FLOAT if in_fp32 or (node.op_type, index) in FP32_INPUTS else HALF
                node.input[index] = as_type(name, want)
        if not in_fp32:
            _retype_attributes(node, numpy_helper)
        for name in float_outputs:
            home[name] = FLOAT if in_fp32 else HALF
        new_nodes.append(node)

    # graph outputs keep float32: the producer writes <name>__fp16 and a Cast restores the name
    renames = {o.name: f"{o.name}__fp16" for o in graph.output if home.get(o.name) == HALF}
    for node in new_nodes:
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                if name in renames:
                    seq[i] = renames[name]
    for original, renamed in renames.items():
        new_nodes.append(helper.make_node("Cast", [renamed], [original], to=FLOAT, name=f"cast_{original}"))

    graph.ClearField("node")
    graph.node.extend(new_nodes)
    used = {name for node in new_nodes for name in node.input}
    kept_inits = [i for i in graph.initializer if i.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend([*kept_inits, *new_inits])
    graph.ClearField("value_info")
    model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    onnx.checker.check_model(model)
    return model


def _retype_attributes(node: Any, numpy_helper: Any) -> None:
    """Ops that create float32 values from attributes make float16 ones instead."""
    from onnx import TensorProto

    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
            attr.i = TensorProto.FLOAT16
        elif attr.name == "value" and attr.type == attr.TENSOR and attr.t.data_type == TensorProto.FLOAT:
            array = np.clip(numpy_helper.to_array(attr.t), -FP16_MAX, FP16_MAX).astype(np.float16)
            attr.t.CopyFrom(numpy_helper.from_array(array, attr.t.name))
        elif node.op_type == "Constant" and attr.name in ("value_float", "value_floats"):
            raise PrecisionError(f"Constant node {node.name!r} uses {attr.name}, which has no float16 form",
                                 "re-export the model with constants as tensors")


# ------------------------------------------------------------------------------------------ INT8


class FrameReader:
    """onnxruntime.quantization.CalibrationDataReader over preprocessed frames (duck-typed)."""

    def __init__(self, input_name: str, tensors: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self._tensors: Iterator[np.ndarray] = iter(tensors)
        self._next = next(self._tensors, None)  # looked ahead so an empty source is known up front
        self.count = 0

    @property
    def empty(self) -> bool:
        return self.count == 0 and self._next is None

    def get_next(self) -> dict[str, np.ndarray] | None:
        tensor, self._next = self._next, (next(self._tensors, None) if self._next is not None else None)
        if tensor is None:
            return None
        self.count += 1
        return {self.input_name: tensor}

    def rewind(self) -> None:
        raise PrecisionError("calibration frames can be read once", "pass a fresh FrameReader")


def head_nodes(model: Any, op_types: Iterable[str]) -> list[str]:
    """Names of quantizable nodes with no quantizable node after them: the output heads."""
    ops = frozenset(op_types)
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    heads = []
    for node in model.graph.node:
        if node.op_type not in ops:
            continue
        stack, seen, downstream = list(node.output), set(), False
        while stack and not downstream:
            for consumer in consumers.get(stack.pop(), []):
                if id(consumer) in seen:
                    continue
                seen.add(id(consumer))
                downstream = consumer.op_type in ops
                stack.extend(consumer.output)
        if not downstream:
            heads.append(node.name)
    return heads


INT8_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")


def quantize_int8(model_path: Path, output: Path, reader: FrameReader, *, keep_heads_fp32: bool = True,
                  method: str = "minmax") -> int:
    """Write the QDQ INT8 variant of model_path to output; returns the number of calibration frames used."""
    onnx = load_onnx()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise PrecisionError(f"unknown calibration method {method!r}", f"choose one of {sorted(methods)}")
    if reader.empty:
        raise PrecisionError("INT8 calibration got no frames", "give --calib a drive with frames, or 'synth'")
    model = onnx.load(str(model_path))
    for node_index, node in enumerate(model.graph.node):  # quantize_static addresses nodes by name
        if not node.name:
            node.name = f"{node.op_type}_{node_index}"
    exclude = head_nodes(model, INT8_OPS) if keep_heads_fp32 else []
    with tempfile.TemporaryDirectory(prefix="perception-int8-") as tmp:
        named = Path(tmp) / "named.onnx"
        onnx.save(model, str(named))
        quantize_static(
            str(named), str(output), reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            per_channel=True, op_types_to_quantize=list(INT8_OPS), nodes_to_exclude=exclude,
            calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
    return reader.count


# ------------------------------------------------------------------------------------------ gate


@dataclass(frozen=True)
class GateResult:
    precision: str
    baseline_pq: float
    variant_pq: float
    limit: float

    @property
    def drop(self) -> float:
        return self.baseline_pq - self.variant_pq

    @property
    def passed(self) -> bool:
        return self.drop <= self.limit

    def summary(self) -> str:
        verdict = "within" if self.passed else f"over by {self.drop - self.limit:.2f} PQ, above"
        return (f"{self.precision}: PQ {self.variant_pq:.2f} vs FP32 {self.baseline_pq:.2f} "
                f"(drop {self.drop:+.2f}; {verdict} the gate of {self.limit:.1f})")


Evaluate = Callable[[Path], float]  # ONNX path -> PQ (0-100) on a held-out drive, run with ONNX Runtime


def gate(precision: str, fp32_model: Path, variant: Path, evaluate: Evaluate,
         limits: Mapping[str, float] = GATE_LIMITS) -> GateResult:
    if precision not in limits:
        raise PrecisionError(f"no accuracy gate for precision {precision!r}", f"gated precisions: {sorted(limits)}")
    return GateResult(precision, float(evaluate(fp32_model)), float(evaluate(variant)), float(limits[precision]))


def enforce(result: GateResult, force: bool) -> None:
    """Refuse a variant above its gate unless forced; the message says by how much."""
    if not result.passed and not force:
        raise PrecisionError(f"the {result.precision} variant loses too much accuracy: {result.summary()}",
                             "use a higher precision, calibrate on frames closer to deployment (--calib), "
                             "or accept it with --force")
