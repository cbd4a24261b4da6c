"""ONNX Runtime backend, CPU by default, tuned for latency next to a capture thread."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from perception.core.native_logs import onnxruntime_severity
from perception.core.tensors import TensorSpec
from perception.inference.engine import EngineOptions, check_feeds
from perception.inference.errors import EngineError, EngineFailed

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or None) for d in arg.shape)
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))


class OrtEngine:
    """One InferenceSession; sequential execution, one inter-op thread.

    Spin-waiting is off by default: on a 2-core robot the capture and publisher threads
    need the cores that spinning intra-op threads would burn.

    quantize_in_float: run every node as the ONNX file writes it, so QuantizeLinear/DequantizeLinear
    pairs are float math (round and clip to int8, scale back) instead of being fused into ORT's
    int8 kernels (graph optimizations off: the gate's runs are slower, not different). The fused
    kernels' results depend on the CPU: x86 without VNNI sums u8 x s8 pairs into int16 with
    saturation, which an int8 GPU engine never does. The accuracy gate uses this so an INT8
    variant is judged on its quantization, not on the int8 instructions of the CPU it ran on.
    """

    name = "onnxruntime"
    reuses_outputs = False  # session.run returns fresh arrays every call
    # several frames in one CPU call are slower per frame than one by one (activations leave the
    # caches: 0.6x on the shipped model, docs/benchmarks.md), so a multi-camera node runs them singly
    batches_well = False

    def __init__(self, model: Path, options: EngineOptions | None = None,
                 providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None, *,
                 quantize_in_float: bool = False) -> None:
        import onnxruntime as ort

        options = options or EngineOptions()
        if not Path(model).is_file():
            raise EngineError(f"model file {model} does not exist", "check the onnx path in the model card (--card)")
        so = ort.SessionOptions()
        # even basic-level rewrites move or merge Q/DQ nodes and change which values round which way
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if quantize_in_float
                                       else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if options.threads > 0:
            so.intra_op_num_threads = options.threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spin else "0")
        so.log_severity_level = onnxruntime_severity()
        try:
            self._session = ort.InferenceSession(
                str(model), sess_options=so, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # ORT raises its own untyped errors for bad files
            raise EngineError(f"ONNX Runtime cannot load {model} ({exc})",
                              "check that the file is a valid ONNX model (perception inspect MODEL.onnx)") from exc
        self._inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self._outputs = tuple(_spec(a) for a in self._session.get_outputs())
        self._output_names = [o.name for o in self._outputs]
        self.model = Path(model)
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(self._inputs, feeds)  # a wrong input is the frame's fault (ModelMismatchError): not fatal
        try:
            results = self._session.run(self._output_names, dict(feeds))
        except Exception as exc:  # ORT's untyped run errors, on an input that fits the model: every frame would fail
            raise EngineFailed(f"ONNX Runtime failed to run {self.model.name} ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:300]})",
                               "the node exits 3 so its supervisor restarts it; check the model with "
                               "`perception inspect MODEL`") from exc
        return dict(zip(self._output_names, results, strict=True))

    def close(self) -> None:
        self._session = None

    def __enter__(self) -> OrtEngine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_ort_cpu(model: Path, options: EngineOptions | None = None) -> OrtEngine:
    """Backend "onnxruntime": the card's FP32 ONNX on the CPU; reduced precision is refused, not ignored.

    The FP16/INT8 variants are made and gated for GPU engines. On a CPU, FP16 runs emulated (slower
    than FP32), and INT8 through ORT's int8 kernels, which without VNNI saturate in int16 and so
    compute something other than what the gate scored (it runs Q/DQ as float math).
    """
    options = options or EngineOptions()
    if options.precision != "fp32":
        raise EngineError(
            f"precision {options.precision!r} is not run by the onnxruntime (CPU) engine: it runs the FP32 model "
            "(CPU FP16 is emulated and slower; CPU INT8 kernels can saturate and differ from the gated variant)",
            'set [model] precision = "fp32" with engine = "onnxruntime", or use engine = "tensorrt" or '
            '"onnxruntime-gpu" on a GPU with a variant from `perception build-engine`')
    return OrtEngine(model, options)
