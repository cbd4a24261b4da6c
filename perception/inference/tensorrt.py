"""TensorRT runtime backend: cached plan, buffers allocated once, one stream, double buffering.

The node keeps the Engine protocol's synchronous `infer`. For overlap it can call
`submit(feeds)` for frame N+1 and then `collect()` frame N's outputs: the GPU copies and
runs N+1 while the CPU decodes N. Two host-side slots of pinned memory make that safe;
device buffers are shared because one stream runs every copy and kernel in order.
CUDA events around the copies and the kernels give the GPU part of the inference stage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType

import numpy as np

from perception.core.errors import ModelMismatchError
from perception.core.tensors import TensorSpec
from perception.inference.cuda import CudaDevice, DeviceBuffer, Event, PinnedBuffer, Stream, cuda_errors
from perception.inference.engine import PRECISIONS, EngineOptions, check_feeds
from perception.inference.errors import EngineError, EngineFailed
from perception.inference.plan_cache import CachedPlan, PlanCache, PlanKey
from perception.inference.trt_build import (
    BuildOptions,
    build_plan,
    has_dynamic_batch,
    load_tensorrt,
    onnx_input_shapes,
    timing_cache_path,
)

# most PQ points a precision may lose against FP32 ONNX Runtime (build-engine's gate, the node's swap check)
GATE_LIMITS = {"fp32": 0.3, "fp16": 0.3, "int8": 1.0}


class PlanMissingError(EngineError):
    """No cached plan for this key, and the caller asked not to build one here."""


def variant_path(model: Path, precision: str, cache_root: Path) -> Path:
    """Where build-engine puts the FP16/INT8 ONNX of `model`: named by the source's hash, never in git."""
    if precision == "fp32":
        return Path(model)
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}", f"choose one of {list(PRECISIONS)}")
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:16]
    return cache_root / "onnx" / f"{Path(model).stem}-{digest}.{precision}.onnx"


def plan_key(trt: ModuleType, gpu_name: str, compute_capability: str, onnx_bytes: bytes, precision: str,
             build: BuildOptions) -> tuple[PlanKey, dict[str, tuple[int, ...]]]:
    """The cache key of the plan this TensorRT would build on this GPU, and the resolved input shapes.

    A graph with a fixed batch has no profile: its max_batch is left out of the key (as 1), so
    a node with four cameras reuses the plan a one-camera node built for it.
    """
    shapes = onnx_input_shapes(onnx_bytes)
    if build.max_batch != 1 and not has_dynamic_batch(onnx_bytes):
        build = dataclasses.replace(build, max_batch=1)
    key = PlanKey.create(hashlib.sha256(onnx_bytes).hexdigest(), str(trt.__version__), gpu_name,
                         compute_capability, precision, shapes, build.as_key())
    return key, shapes


@dataclass(frozen=True)
class GpuTiming:
    """GPU-side milliseconds of one inference, from CUDA events on the engine's stream."""

    upload_ms: float
    compute_ms: float
    download_ms: float

    @property
    def total_ms(self) -> float:
        return self.upload_ms + self.compute_ms + self.download_ms


class _Slot:
    """Pinned host buffers and events of one frame in flight."""

    def __init__(self, device: CudaDevice, specs: tuple[TensorSpec, ...], shapes: Mapping[str, tuple[int, ...]],
                 n_inputs: int) -> None:
        buffers = {t.name: PinnedBuffer(device, shapes[t.name], t.dtype) for t in specs}
        names = [t.name for t in specs]
        self.inputs = {n: buffers[n] for n in names[:n_inputs]}
        self.outputs = {n: buffers[n] for n in names[n_inputs:]}
        self.start, self.computing, self.computed, self.done = (Event(device) for _ in range(4))
        self.rows = 0  # frames of the inference this slot holds

    def close(self) -> None:
        for owned in (*self.inputs.values(), *self.outputs.values(),
                      self.start, self.computing, self.computed, self.done):
            owned.close()


class TrtEngine:
    """Engine backend "tensorrt": model is the card's FP32 ONNX; options.precision picks the variant.

    A graph with a dynamic batch axis is built with an optimization profile over 1..options.max_batch
    frames; buffers are sized for the largest batch and each call sets the context's input shape
    to the batch it runs (TensorRT refuses a shape outside the profile).
    """

    name = "tensorrt"
    SLOTS = 2
    batches_well = True  # a GPU fills its cores with a batch of frames

    def __init__(self, model: Path, options: EngineOptions | None = None, *,
                 build: BuildOptions | None = None, cache: PlanCache | None = None,
                 rebuild_corrupt: bool = True, build_here: bool = True) -> None:
        """build_here=False: only a cached plan is loaded; a miss raises PlanMissingError (the node
        builds in a separate process instead)."""
        options = options or EngineOptions()
        self._trt = load_tensorrt()
        self.cache = cache or PlanCache(options.cache_dir)
        onnx_path = variant_path(Path(model), options.precision, self.cache.root)
        if not onnx_path.is_file():
            hint = (f"run `perception build-engine {model} --precision {options.precision}` first"
                    if options.precision != "fp32" else "check the path in the model card")
            raise EngineError(f"ONNX model {onnx_path} does not exist", hint)
        self.model = onnx_path
        self.device = CudaDevice(options.device)
        self._closed = False
        build = dataclasses.replace(build or BuildOptions(), max_batch=options.max_batch)
        try:
            self._open(onnx_path, options.precision, build, rebuild_corrupt, build_here)
        except BaseException:
            self.close()
            raise

    def _open(self, onnx_path: Path, precision: str, build: BuildOptions, rebuild_corrupt: bool,
              build_here: bool) -> None:
        trt = self._trt
        onnx_bytes = onnx_path.read_bytes()
        self.key, shapes = plan_key(trt, self.device.name, self.device.compute_capability, onnx_bytes, precision,
                                    build)
        with self.device.active():
            timing_cache = timing_cache_path(self.cache.root, self.key)
            if build_here:
                self.plan: CachedPlan = self.cache.get_or_build(
                    self.key, lambda: build_plan(trt, onnx_bytes, shapes, build, timing_cache, progress=sys.stderr),
                    rebuild_corrupt=rebuild_corrupt, source=str(onnx_path))
            else:
                cached = self.cache.load(self.key)
                if cached is None:
                    raise PlanMissingError(f"no cached TensorRT plan for {onnx_path.name} on {self.device.name}",
                                           "build it (the node does so in the background, or perception "
                                           "build-engine)")
                self.plan = CachedPlan(cached, self.cache.plan_path(self.key), "hit")
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(self.plan.plan)
            if self._engine is None:
                raise EngineError(f"TensorRT {trt.__version__} cannot load the cached plan {self.plan.path}",
                                  "run `perception engines clear` and start again to rebuild it")
            self._context = self._engine.create_execution_context()
            self._inputs, self._outputs = self._io_specs(shapes)
            self.stream = Stream(self.device)
            specs = (*self._inputs, *self._outputs)
            self._device_buffers = {t.name: DeviceBuffer(self.device, int(np.prod(self._full[t.name])) * np.dtype(
                t.dtype).itemsize) for t in specs}
            for name, buffer in self._device_buffers.items():
                if not self._context.set_tensor_address(name, int(buffer)):
                    raise EngineError(f"TensorRT refused the address of tensor {name!r}", "rebuild the plan")
            self._slots = [_Slot(self.device, specs, self._full, len(self._inputs)) for _ in range(self.SLOTS)]
        self._pending: deque[_Slot] = deque()
        self._next = 0
        self.last_timing: GpuTiming | None = None

    def _io_specs(self, shapes: Mapping[str, tuple[int, ...]]) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """Specs of the inputs and outputs; self._full: each tensor's shape at the largest batch.

        Where the plan's profile spans several batches the specs' batch axis is symbolic, like
        ONNX Runtime's on the same graph, and max_batch is the profile's top.
        """
        trt, engine, context = self._trt, self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs, outputs = [], []
        self._full: dict[str, tuple[int, ...]] = {}
        self._dynamic: list[str] = []  # inputs whose batch the context is told per call
        self.max_batch = 1
        for name in names:
            if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                continue
            shape = tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                _low, _opt, high = (tuple(s) for s in engine.get_tensor_profile_shape(name, 0))
                shape = (high[0], *shapes[name][1:]) if shape[0] < 0 else tuple(shapes[name])
                if not context.set_input_shape(name, shape):
                    raise ModelMismatchError(f"TensorRT refused input shape {shape} for {name!r}",
                                             "rebuild the plan (perception engines clear)")
                if shape[0] != shapes[name][0]:
                    self._dynamic.append(name)
            self.max_batch = max(self.max_batch, shape[0])
            self._full[name] = shape
            inputs.append(TensorSpec(name, self._batched(shape), self._dtype(name)))
        for name in names:
            if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                shape = tuple(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise ModelMismatchError(f"output {name!r} has a data-dependent shape {shape}",
                                             "export the model with static output shapes")
                self._full[name] = shape
                outputs.append(TensorSpec(name, self._batched(shape), self._dtype(name)))
        self._batch = self.max_batch  # the batch the context's input shapes are set to
        return tuple(inputs), tuple(outputs)

    def _batched(self, shape: tuple[int, ...]) -> tuple[int | str, ...]:
        return ("batch", *shape[1:]) if self._dynamic and shape[0] == self.max_batch else shape

    def _dtype(self, name: str) -> str:
        return np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name))).name

    def _set_batch(self, rows: int) -> None:
        """Tell the context the batch of the next inference (outputs follow from the input shapes)."""
        if rows == self._batch:
            return
        if not 1 <= rows <= self.max_batch:
            raise ModelMismatchError(f"a batch of {rows} frames is outside the plan's profile 1..{self.max_batch}",
                                     f"set [model] batch = {self.max_batch} or less, or build the plan for "
                                     f"{rows} (it is rebuilt for the node's batch)")
        for name in self._dynamic:
            shape = (rows, *self._full[name][1:])
            if not self._context.set_input_shape(name, shape):
                raise ModelMismatchError(f"TensorRT refused input shape {shape} for {name!r}",
                                         "rebuild the plan (perception engines clear)")
        self._batch = rows

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def submit(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Queue one inference without waiting; at most two may be in flight."""
        self._check_open()
        if len(self._pending) >= self.SLOTS:
            raise EngineError(f"{self.SLOTS} inferences already in flight", "collect() one before submitting more")
        slot = self._slots[self._next]
        check_feeds(self._inputs, feeds)
        rows = int(feeds[self._inputs[0].name].shape[0]) if self._dynamic else self.max_batch
        self._set_batch(rows)
        for spec in self._inputs:
            np.copyto(slot.inputs[spec.name].array[:rows], feeds[spec.name])
        slot.rows = rows
        stream = self.stream
        with self.device.active():
            slot.start.record(stream)
            for name, host in slot.inputs.items():
                self._device_buffers[name].upload(host, stream, rows)
            slot.computing.record(stream)
            with cuda_errors("enqueue the TensorRT engine"):
                ok = self._context.execute_async_v3(stream.handle)
            if not ok:
                raise EngineFailed("TensorRT failed to enqueue the inference (see its log)",
                                  "check `perception doctor`; rebuild the plan if TensorRT was upgraded")
            slot.computed.record(stream)
            for name, host in slot.outputs.items():
                self._device_buffers[name].download(host, stream, rows)
            slot.done.record(stream)
        self._pending.append(slot)
        self._next = (self._next + 1) % self.SLOTS

    def collect(self) -> dict[str, np.ndarray]:
        """Wait for the oldest submitted inference; its arrays stay valid until the next submit()."""
        self._check_open()
        if not self._pending:
            raise EngineError("collect() with nothing submitted", "call submit(feeds) first")
        slot = self._pending.popleft()
        slot.done.synchronize()
        self.last_timing = GpuTiming(slot.start.elapsed_ms(slot.computing), slot.computing.elapsed_ms(slot.computed),
                                     slot.computed.elapsed_ms(slot.done))
        return {name: host.array[:slot.rows] for name, host in slot.outputs.items()}

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._pending:
            raise EngineError("infer() while submitted inferences are uncollected", "collect() them first")
        self.submit(feeds)
        return self.collect()

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("TensorRT engine used after close()", "open a new engine")

    def close(self) -> None:
        """Wait for queued work, then free buffers, TensorRT objects and the context, in that order."""
        if self._closed:
            return
        self._closed = True
        if not getattr(self.device, "_closed", True):
            with self.device.active():
                stream = getattr(self, "stream", None)
                if stream is not None:
                    stream.close()
                for slot in getattr(self, "_slots", []):
                    slot.close()
                for buffer in getattr(self, "_device_buffers", {}).values():
                    buffer.close()
                # TensorRT frees device memory when these go; the context must still be current
                for attr in ("_context", "_engine", "_runtime"):
                    if hasattr(self, attr):
                        delattr(self, attr)
            self.device.close()

    def __enter__(self) -> TrtEngine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

