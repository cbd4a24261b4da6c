"""ONNX -> TensorRT plan: strongly typed build with a persisted timing cache and a progress display.

Precision is already in the ONNX (see precision.py): TensorRT 11 has no FP16/INT8 builder
flags, and on TensorRT 10 the network is created strongly typed so both versions build
the same thing from the same file. Only this module and tensorrt.py touch the TensorRT API.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from perception.core.errors import MissingDependencyError, ModelMismatchError
from perception.inference.errors import EngineError
from perception.inference.plan_cache import PlanKey, atomic_write, file_lock

TENSORRT_INSTALL_HINT = ("pip install 'perception-node[tensorrt]' (x86: TensorRT wheels come from NVIDIA's index; "
                         "Jetson: use the TensorRT that JetPack installs), or run with --engine onnxruntime")


def load_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependencyError("tensorrt", "building and running TensorRT engines",
                                     TENSORRT_INSTALL_HINT) from exc
    return tensorrt


def tensorrt_major(trt: ModuleType) -> int:
    return int(str(trt.__version__).split(".")[0])


MAX_BATCH = 256  # frames one plan may take; far above any camera rig


@dataclass(frozen=True)
class BuildOptions:
    """Builder settings that change the plan, hence part of its cache key."""

    workspace_mib: int = 1024
    optimization_level: int = 3  # TensorRT's default; 5 searches longer for faster kernels
    # the top of the optimization profile over a dynamic batch axis (1..max_batch, tuned for
    # max_batch): a plan built for 1 frame cannot run a batch of 4 cameras, so it is in the key
    max_batch: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= MAX_BATCH:
            raise EngineError(f"max batch {self.max_batch} is outside 1..{MAX_BATCH}",
                              "build for the number of cameras the node batches ([model] batch)")

    def as_key(self) -> dict[str, object]:
        return {"workspace_mib": self.workspace_mib, "optimization_level": self.optimization_level,
                "max_batch": self.max_batch}


def onnx_input_shapes(onnx_bytes: bytes, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Graph inputs with every dynamic dimension resolved (batch -> `batch`, others refused)."""
    return {name: tuple(batch if d is None else d for d in dims) for name, dims in _onnx_inputs(onnx_bytes).items()}


def has_dynamic_batch(onnx_bytes: bytes) -> bool:
    """Whether some graph input has a dynamic batch axis (then a plan takes 1..max_batch frames)."""
    return any(dims and dims[0] is None for dims in _onnx_inputs(onnx_bytes).values())


def _onnx_inputs(onnx_bytes: bytes) -> dict[str, tuple[int | None, ...]]:
    """Graph inputs' dimensions, None for a dynamic batch axis; any other dynamic dimension is refused."""
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("onnx", "reading ONNX input shapes for a TensorRT build",
                                     "pip install 'perception-node[tensorrt]'") from exc
    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise EngineError(f"the file is not a valid ONNX model ({exc})", "re-export the model") from exc
    initializers = {i.name for i in model.graph.initializer}
    shapes: dict[str, tuple[int | None, ...]] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims: list[int | None] = []
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(int(dim.dim_value))
            elif axis == 0:
                dims.append(None)
            else:
                raise ModelMismatchError(
                    f"input {value.name!r} has a dynamic dimension {axis} ({dim.dim_param or '?'})",
                    "export the ONNX with a fixed input size (the card's width/height)")
        shapes[value.name] = tuple(dims)
    return shapes


def network_flags(trt: ModuleType) -> int:
    """STRONGLY_TYPED: needed on TensorRT 10 so precision follows the ONNX; accepted and ignored on 11."""
    flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    return 1 << int(flag) if flag is not None else 0


def make_progress_monitor(trt: ModuleType, stream: TextIO | None,
                          on_fraction: Callable[[float], None] | None = None) -> Any:
    """A trt.IProgressMonitor that prints one line per phase and its step count to stream, and
    reports the build's completed fraction (0..1, never decreasing) to on_fraction.

    The fraction is the running top phase's steps, each refined by its running sub-phase's
    (TensorRT 10/11: phases nest by parent name; a phase may finish before all its steps were
    reported). TensorRT calls the monitor from its own threads, so everything is serialized by
    a lock.
    """

    class PhasePrinter(trt.IProgressMonitor):  # type: ignore[name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._depth: dict[str, int] = {}
            self._steps: dict[str, int] = {}
            self._done: dict[str, int] = {}
            self._parent: dict[str, str | None] = {}
            self._started: dict[str, float] = {}
            self._fraction = 0.0

        def _say(self, line: str) -> None:
            if stream is not None:
                print(line, file=stream, flush=True)

        def _fraction_of(self, phase: str) -> float:
            steps = max(self._steps.get(phase, 0), 1)
            child = next((p for p, parent in self._parent.items() if parent == phase), None)
            inner = self._fraction_of(child) if child is not None else 0.0
            return min((self._done.get(phase, 0) + inner) / steps, 1.0)

        def _report(self) -> None:
            root = next((p for p, parent in self._parent.items() if parent is None), None)
            if on_fraction is None or root is None:
                return
            fraction = max(self._fraction, self._fraction_of(root))
            if fraction > self._fraction:
                self._fraction = fraction
                on_fraction(fraction)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
                self._depth[phase_name] = depth
                self._steps[phase_name] = num_steps
                self._done[phase_name] = 0
                self._parent[phase_name] = parent_phase
                self._started[phase_name] = time.monotonic()
                self._say(f"{'  ' * depth}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                total = self._steps.get(phase_name, 0)
                self._done[phase_name] = step + 1
                if total >= 20 and (step + 1) % max(total // 10, 1) == 0:
                    depth = self._depth.get(phase_name, 0)
                    self._say(f"{'  ' * depth}  {phase_name}: {step + 1}/{total}")
                self._report()
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                took = time.monotonic() - self._started.pop(phase_name, time.monotonic())
                depth = self._depth.pop(phase_name, 0)
                parent = self._parent.pop(phase_name, None)
                self._steps.pop(phase_name, None)
                self._done.pop(phase_name, None)
                if parent is not None:  # a finished sub-phase counts as its parent's step in progress
                    self._report()
                if depth == 0:  # TensorRT may start another independent phase after this one: not 100% yet
                    self._say(f"{phase_name} done in {took:.1f} s")

    return PhasePrinter()


def timing_cache_path(cache_root: Path, key: PlanKey) -> Path:
    """One timing cache per TensorRT version and GPU: tactic timings carry over between models."""
    ident = f"{key.tensorrt_version}|{key.gpu_name}|{key.compute_capability}"
    return cache_root / f"timing-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.cache"


def build_plan(trt: ModuleType, onnx_bytes: bytes, shapes: Mapping[str, tuple[int, ...]],
               options: BuildOptions, timing_cache: Path | None, progress: TextIO | None = None,
               on_fraction: Callable[[float], None] | None = None) -> bytes:
    """Parse, configure and build; returns the serialized plan.

    progress: where phases are printed; on_fraction: told the completed fraction as it grows.
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse the ONNX model ({errors or 'no detail'})",
                          "check the opset and operators (perception doctor shows the TensorRT version)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    config.builder_optimization_level = options.optimization_level
    _add_profile(builder, network, config, shapes, options.max_batch)
    if progress is not None or on_fraction is not None:
        config.progress_monitor = make_progress_monitor(trt, progress, on_fraction)
    lock = timing_cache.with_suffix(".lock") if timing_cache else None
    if timing_cache is not None and lock is not None:
        with file_lock(lock):
            previous = timing_cache.read_bytes() if timing_cache.exists() else b""
        cache = config.create_timing_cache(previous)
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            # a cache from another TensorRT build or GPU: start empty rather than fail the build
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError("TensorRT failed to build the engine (see the log above)",
                          "raise --workspace-mib, or check that the GPU supports the model's precision")
    if timing_cache is not None and lock is not None:
        with file_lock(lock):
            atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def _add_profile(builder: Any, network: Any, config: Any, shapes: Mapping[str, tuple[int, ...]],
                 max_batch: int) -> None:
    """Inputs with a dynamic batch axis get one optimization profile over 1..max_batch frames.

    opt = max: the node batches one frame per camera, so the full batch is the common case and
    the one TensorRT should pick kernels for; smaller batches (a camera lost) still run.
    """
    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(tensor.shape)
        if all(d >= 0 for d in dims):
            continue
        if tensor.name not in shapes:
            raise ModelMismatchError(f"input {tensor.name!r} is dynamic {dims} and has no resolved shape",
                                     "export the ONNX with fixed input sizes")
        low = tuple(shapes[tensor.name])
        high = (max_batch, *low[1:]) if dims[0] < 0 else low
        profile = profile or builder.create_optimization_profile()
        profile.set_shape(tensor.name, low, high, high)
    if profile is not None and config.add_optimization_profile(profile) < 0:
        raise EngineError(f"TensorRT refused the optimization profile over batches 1..{max_batch}",
                          "check the ONNX input shapes (perception inspect)")
