"""Backend "onnxruntime-gpu": ONNX Runtime with its TensorRT or CUDA execution provider.

The second GPU path, for users who want no plan management: ORT builds and caches the
TensorRT engines itself. It is an install choice, not an extra: `onnxruntime` and
`onnxruntime-gpu` install the same Python module, so only one of them can be present.
Precision works as for the "tensorrt" backend: the FP16/INT8 variant ONNX made by
`perception build-engine` is loaded, so TensorRT 11 (strongly typed) sees the same graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perception.core.errors import MissingDependencyError
from perception.inference.engine import EngineOptions
from perception.inference.errors import EngineError
from perception.inference.onnxruntime import OrtEngine
from perception.inference.plan_cache import default_cache_dir
from perception.inference.tensorrt import variant_path

ORT_GPU_INSTALL = ("pip uninstall -y onnxruntime && pip install onnxruntime-gpu "
                   "(the CPU and GPU packages provide the same module and cannot be installed together; "
                   "see docs/tensorrt.md)")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def gpu_providers(available: list[str], options: EngineOptions,
                  cache_root: Path) -> list[tuple[str, dict[str, Any]]]:
    """Provider list in preference order: TensorRT EP, CUDA EP, then CPU for nodes neither takes."""
    chosen: list[tuple[str, dict[str, Any]]] = []
    if "TensorrtExecutionProvider" in available:
        engines = str(cache_root / "ort-tensorrt")
        chosen.append(("TensorrtExecutionProvider", {
            "device_id": options.device,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": engines,
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": engines,
        }))
    if "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {"device_id": options.device}))
    if not chosen:
        raise MissingDependencyError("onnxruntime-gpu", "the onnxruntime-gpu engine", ORT_GPU_INSTALL)
    chosen.append(("CPUExecutionProvider", {}))
    return chosen


def open_ort_gpu(model: Path, options: EngineOptions | None = None) -> OrtEngine:
    import onnxruntime as ort

    options = options or EngineOptions()
    cache_root = options.cache_dir or default_cache_dir()
    onnx_path = variant_path(Path(model), options.precision, cache_root)
    if not onnx_path.is_file():
        raise EngineError(f"ONNX model {onnx_path} does not exist",
                          f"run `perception build-engine {model} --precision {options.precision}` first")
    providers = gpu_providers(ort.get_available_providers(), options, cache_root)
    engine = OrtEngine(onnx_path, options, providers=providers)
    # ORT quietly drops a GPU provider whose CUDA/TensorRT libraries fail to load; a GPU engine
    # that silently runs on the CPU would blow every latency budget, so refuse it instead.
    active = engine._session.get_providers()
    if not any(p in active for p in GPU_PROVIDERS):
        engine.close()
        raise EngineError(f"onnxruntime-gpu could not start a GPU provider (active: {active})",
                          "check the CUDA/cuDNN/TensorRT libraries with `perception doctor`")
    engine.name = "onnxruntime-gpu"
    engine.batches_well = True  # a GPU fills its cores with a batch of frames
    return engine
