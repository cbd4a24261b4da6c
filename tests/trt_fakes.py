"""Stand-ins for what cannot run here: pycuda.driver (no GPU) and tensorrt (no NVIDIA index).

They behave like the real modules as far as the engine uses them, failures included:
memory is bounded and runs out, freed memory cannot be used, a plan from another "GPU"
or TensorRT version does not deserialize, an ONNX the parser cannot read fails to parse.
The fake TensorRT "plan" carries the ONNX, and execute_async_v3 runs it with ONNX
Runtime on the bytes behind the device pointers, through whatever pycuda.driver is
installed: this fake here, the real pycuda on a GPU machine.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

# ---------------------------------------------------------------- pycuda.driver


class Error(Exception):
    pass


class MemoryError(Error):
    pass


class LogicError(Error):
    pass


_TOTAL_MEMORY = 256 << 20
_memory: dict[int, bytearray] = {}
_addresses = itertools.count(0x7F0000000000, 1 << 32)
_context_stack: list[Any] = []


def init(flags: int = 0) -> None:
    return None


class Device:
    @staticmethod
    def count() -> int:
        return 1

    def __init__(self, index: int) -> None:
        if index != 0:
            raise LogicError("cuDeviceGet failed: invalid device ordinal")
        self.index = index

    def name(self) -> str:
        return "Fake GPU"

    def compute_capability(self) -> tuple[int, int]:
        return (8, 7)

    def total_memory(self) -> int:
        return _TOTAL_MEMORY

    def retain_primary_context(self) -> Context:
        return Context(self)


class Context:
    def __init__(self, device: Device) -> None:
        self.device = device
        self.detached = False

    def push(self) -> None:
        if self.detached:
            raise LogicError("cuCtxPushCurrent failed: context is destroyed")
        _context_stack.append(self)

    @staticmethod
    def pop() -> None:
        if not _context_stack:
            raise LogicError("cuCtxPopCurrent failed: invalid context")
        _context_stack.pop()

    def detach(self) -> None:
        self.detached = True

    @staticmethod
    def synchronize() -> None:
        _require_context()


def _require_context() -> None:
    if not _context_stack:
        raise LogicError("invalid device context (no context is current)")


def mem_get_info() -> tuple[int, int]:
    _require_context()
    used = sum(len(b) for b in _memory.values())
    return _TOTAL_MEMORY - used, _TOTAL_MEMORY


class DeviceAllocation:
    def __init__(self, nbytes: int) -> None:
        _require_context()
        if nbytes + sum(len(b) for b in _memory.values()) > _TOTAL_MEMORY:
            raise MemoryError("cuMemAlloc failed: out of memory")
        self.address = next(_addresses)
        _memory[self.address] = bytearray(nbytes)

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        _memory.pop(self.address, None)


def mem_alloc(nbytes: int) -> DeviceAllocation:
    return DeviceAllocation(nbytes)


class HostAllocation(bytearray):
    """numpy arrays made over it keep it as .base, like pycuda's pagelocked arrays."""

    freed = False

    def free(self) -> None:
        self.freed = True


def pagelocked_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    _require_context()
    dtype = np.dtype(dtype)
    return np.ndarray(shape, dtype, buffer=HostAllocation(int(np.prod(shape)) * dtype.itemsize))


def _device_bytes(ptr: Any) -> bytearray:
    address = int(ptr)
    for base, block in _memory.items():
        if base <= address < base + max(len(block), 1):
            return memoryview(block)[address - base:]  # type: ignore[return-value]
    raise LogicError(f"cuMemcpy failed: invalid device pointer {address:#x} (freed?)")


def memcpy_htod(dst: Any, src: np.ndarray) -> None:
    _require_context()
    raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
    _device_bytes(dst)[:raw.nbytes] = raw.tobytes()


def memcpy_dtoh(dst: np.ndarray, src: Any) -> None:
    _require_context()
    view = dst.reshape(-1).view(np.uint8)
    view[:] = np.frombuffer(_device_bytes(src)[:view.nbytes], np.uint8)


class Stream:
    _handles = itertools.count(1)

    def __init__(self, flags: int = 0) -> None:
        _require_context()
        self.handle = next(self._handles)

    def synchronize(self) -> None:
        _require_context()


def memcpy_htod_async(dst: Any, src: np.ndarray, stream: Stream | None = None) -> None:
    memcpy_htod(dst, src)  # this fake completes work at once; ordering is what matters


def memcpy_dtoh_async(dst: np.ndarray, src: Any, stream: Stream | None = None) -> None:
    memcpy_dtoh(dst, src)


class Event:
    _clock = itertools.count()

    def __init__(self, flags: int = 0) -> None:
        self.stamp: int | None = None

    def record(self, stream: Stream | None = None) -> Event:
        _require_context()
        self.stamp = next(self._clock)
        return self

    def synchronize(self) -> Event:
        if self.stamp is None:
            raise LogicError("cuEventSynchronize failed: event not recorded")
        return self

    def query(self) -> bool:
        return self.stamp is not None

    def time_till(self, end: Event) -> float:
        if self.stamp is None or end.stamp is None:
            raise LogicError("cuEventElapsedTime failed: event not recorded")
        return 0.01 * (end.stamp - self.stamp)


def fake_pycuda() -> dict[str, types.ModuleType]:
    """Modules to put in sys.modules as `pycuda` and `pycuda.driver`."""
    driver = types.ModuleType("pycuda.driver")
    for name in ("Error", "MemoryError", "LogicError", "init", "Device", "Context", "mem_get_info",
                 "mem_alloc", "pagelocked_empty", "memcpy_htod", "memcpy_dtoh", "memcpy_htod_async",
                 "memcpy_dtoh_async", "Stream", "Event"):
        setattr(driver, name, globals()[name])
    _memory.clear()
    _context_stack.clear()
    package = types.ModuleType("pycuda")
    package.driver = driver  # type: ignore[attr-defined]
    return {"pycuda": package, "pycuda.driver": driver}


def live_device_bytes() -> int:
    return sum(len(b) for b in _memory.values())


# ---------------------------------------------------------------- tensorrt

_PLAN_MAGIC = b"FAKETRT1"
_DTYPES = {1: "float32", 2: "float16", 3: "int8", 4: "int32", 5: "uint8"}
_ONNX_TO_CODE = {"tensor(float)": 1, "tensor(float16)": 2, "tensor(int8)": 3, "tensor(int32)": 4,
                 "tensor(uint8)": 5}


def make_fake_tensorrt(version: str = "10.3.0", gpu: str = "Fake GPU", kernels: str = "onnxruntime",
                       build_seconds: float = 0.0, crash: bool = False, build_memory_mib: int = 0,
                       disagree: bool = False) -> types.ModuleType:
    """kernels="none" makes execute_async_v3 enqueue nothing: what is left to time is the backend's own cost.

    Builder behaviour, as real builds go wrong: build_seconds spreads the tactic steps over that
    long; crash kills the process with SIGSEGV halfway (a crashing plugin or driver);
    build_memory_mib takes that much host memory, touched, over the build (the builder's
    workspace and tactic buffers); disagree builds a plan whose float outputs are negated (a
    miscompiled engine: it loads and runs, its results are wrong).
    """
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version  # type: ignore[attr-defined]
    builds: list[dict[str, Any]] = []
    executions: list[dict[str, tuple[int, ...]]] = []  # the input shapes of every enqueued inference

    class Logger:
        WARNING = 2

        def __init__(self, severity: int = 2) -> None:
            self.severity = severity

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 5

    class MemoryPoolType:
        WORKSPACE = 0

    class TensorIOMode:
        INPUT = 1
        OUTPUT = 2

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.onnx = b""
            self.inputs: list[Any] = []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> Any:
            return self.inputs[i]

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.errors: list[str] = []

        def parse(self, data: bytes) -> bool:
            try:
                session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
            except Exception as exc:  # ORT's parse errors are untyped; the real parser returns False
                self.errors.append(f"ModelImporter: {exc}")
                return False
            self.network.onnx = bytes(data)
            self.network.inputs = [types.SimpleNamespace(name=i.name, shape=tuple(
                d if isinstance(d, int) else -1 for d in i.shape)) for i in session.get_inputs()]
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.entries = json.loads(data) if data else []

        def serialize(self) -> bytes:
            return json.dumps(self.entries).encode()

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, Any] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

        def valid(self) -> bool:  # what add_optimization_profile checks: min <= opt <= max everywhere
            return all(len(lo) == len(opt) == len(hi) and all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True))
                       for lo, opt, hi in self.shapes.values())

    class Config:
        def __init__(self) -> None:
            self.pools: dict[int, int] = {}
            self.builder_optimization_level = 3
            self.progress_monitor: Any = None
            self.timing: TimingCache | None = None
            self.profiles: list[Profile] = []

        def set_memory_pool_limit(self, pool: int, size: int) -> None:
            self.pools[pool] = size

        def create_timing_cache(self, data: bytes) -> TimingCache | None:
            try:
                return TimingCache(bytes(data))
            except ValueError:
                return None

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            self.timing = cache
            return True

        def get_timing_cache(self) -> TimingCache | None:
            return self.timing

        def add_optimization_profile(self, profile: Profile) -> int:
            if not profile.valid():
                return -1  # TensorRT returns -1 for an invalid profile
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            profiles = [{n: [list(s) for s in shapes] for n, shapes in p.shapes.items()} for p in config.profiles]
            for tensor in network.inputs:
                dims = tuple(tensor.shape)
                if any(d < 0 for d in dims):
                    # "Network has dynamic or shape inputs, but no optimization profile has been defined."
                    if not profiles or any(tensor.name not in p for p in profiles):
                        return None
                    if any(not _fits(dims, p[tensor.name][0]) or not _fits(dims, p[tensor.name][2])
                           for p in profiles):
                        return None  # a profile shape that contradicts the network's fixed dims
            monitor = config.progress_monitor
            held = []
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
                monitor.phase_start("Tactic selection", "Building engine", 30)
            for step in range(30):
                time.sleep(build_seconds / 30)
                if build_memory_mib:
                    held.append(b"\x01" * ((build_memory_mib << 20) // 30))
                if crash and step == 15:
                    os.kill(os.getpid(), signal.SIGSEGV)
                if monitor is not None:
                    monitor.step_complete("Tactic selection", step)
            del held
            if monitor is not None:
                monitor.phase_finish("Tactic selection")
                monitor.step_complete("Building engine", 0)
                monitor.phase_finish("Building engine")
            if config.timing is not None:
                config.timing.entries.append(len(config.timing.entries))
            builds.append({"flags": network.flags, "workspace": config.pools.get(0),
                           "opt_level": config.builder_optimization_level, "profiles": profiles,
                           "timing_entries_before": len(config.timing.entries) - 1 if config.timing else None})
            header = json.dumps({"version": version, "gpu": gpu, "negate": disagree, "profiles": profiles}).encode()
            return _PLAN_MAGIC + len(header).to_bytes(4, "little") + header + network.onnx

    class Engine:
        def __init__(self, onnx: bytes, negate: bool = False, profiles: list[dict[str, Any]] | None = None) -> None:
            self.negate = negate
            self.profiles = profiles or []
            self.session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
            self.io = [(i.name, TensorIOMode.INPUT, i) for i in self.session.get_inputs()]
            self.io += [(o.name, TensorIOMode.OUTPUT, o) for o in self.session.get_outputs()]

        @property
        def num_io_tensors(self) -> int:
            return len(self.io)

        def get_tensor_name(self, i: int) -> str:
            return self.io[i][0]

        def _arg(self, name: str) -> Any:
            return next(a for n, _, a in self.io if n == name)

        def get_tensor_mode(self, name: str) -> int:
            return next(m for n, m, _ in self.io if n == name)

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(d if isinstance(d, int) else -1 for d in self._arg(name).shape)

        def get_tensor_dtype(self, name: str) -> int:
            return _ONNX_TO_CODE[self._arg(name).type]

        @property
        def num_optimization_profiles(self) -> int:
            return max(len(self.profiles), 1)

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
            """[min, opt, max] of a dynamic input in that profile (TensorRT raises for others)."""
            if profile_index >= len(self.profiles) or name not in self.profiles[profile_index]:
                raise RuntimeError(f"no profile {profile_index} shape for {name!r}")
            return [tuple(s) for s in self.profiles[profile_index][name]]

        def create_execution_context(self) -> Context_:
            return Context_(self)

    class Context_:  # noqa: N801 - IExecutionContext
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.addresses: dict[str, int] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.shape_calls: list[tuple[str, tuple[int, ...]]] = []
            self.profile = 0
            self.runs = 0

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            """False (TensorRT logs an error) for a shape the engine's fixed dims or its profile do not allow."""
            shape = tuple(int(d) for d in shape)
            if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
                return False
            dims = self.engine.get_tensor_shape(name)
            if not _fits(dims, shape):
                return False
            if any(d < 0 for d in dims):
                low, _opt, high = self.engine.get_tensor_profile_shape(name, self.profile)
                if not all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True)):
                    return False
            self.shapes[name] = shape
            self.shape_calls.append((name, shape))
            return True

        def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
            if not 0 <= profile_index < self.engine.num_optimization_profiles:
                return False
            self.profile = profile_index
            self.shapes.clear()  # like TensorRT: input shapes must be set again for the new profile
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name in self.shapes:
                return self.shapes[name]
            shape = self.engine.get_tensor_shape(name)
            if any(d < 0 for d in shape):  # resolve outputs by running once on zeros, like shape inference
                feeds = {n: np.zeros(self.shapes.get(n, ()), _DTYPES[self.engine.get_tensor_dtype(n)])
                         for n, m, _ in self.engine.io if m == TensorIOMode.INPUT}
                out = dict(zip([o.name for o in self.engine.session.get_outputs()],
                               self.engine.session.run(None, feeds), strict=True))
                shape = out[name].shape
            return tuple(shape)

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = int(address)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            for name, mode, _ in self.engine.io:  # a dynamic input whose shape was never set: not enqueued
                if mode == TensorIOMode.INPUT and name not in self.shapes and \
                        any(d < 0 for d in self.engine.get_tensor_shape(name)):
                    return False
            executions.append({n: self.shapes[n] for n, m, _ in self.engine.io if m == TensorIOMode.INPUT
                               and n in self.shapes})
            if kernels == "none":
                self.runs += 1
                return True
            drv = sys.modules["pycuda.driver"]
            drv.Context.synchronize()  # fake kernels run on the host, after earlier stream work
            feeds = {}
            for name, mode, _ in self.engine.io:
                if mode == TensorIOMode.INPUT:
                    host = np.empty(self.get_tensor_shape(name), _DTYPES[self.engine.get_tensor_dtype(name)])
                    drv.memcpy_dtoh(host, self.addresses[name])
                    feeds[name] = host
            names = [o.name for o in self.engine.session.get_outputs()]
            for name, value in zip(names, self.engine.session.run(names, feeds), strict=True):
                result = -value if self.engine.negate and value.dtype.kind == "f" else value
                drv.memcpy_htod(self.addresses[name], np.ascontiguousarray(result))
            self.runs += 1
            return True

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, plan: bytes) -> Engine | None:
            if not plan.startswith(_PLAN_MAGIC):
                return None
            size = int.from_bytes(plan[8:12], "little")
            header = json.loads(plan[12:12 + size])
            if (header.get("version"), header.get("gpu")) != (version, gpu):
                return None  # real TensorRT refuses plans from another version or GPU
            return Engine(plan[12 + size:], bool(header.get("negate")), header.get("profiles"))

    def nptype(code: int) -> type:
        return np.dtype(_DTYPES[code]).type

    for name, value in dict(locals()).items():
        if name[0].isupper() or name == "nptype":
            setattr(trt, name.rstrip("_"), value)
    trt.builds = builds  # type: ignore[attr-defined]
    trt.executions = executions  # type: ignore[attr-defined]
    return trt


def _fits(dims: tuple[int, ...], shape: Any) -> bool:
    """shape has dims' rank and agrees with every fixed (non -1) dimension."""
    shape = tuple(shape)
    return len(shape) == len(dims) and all(d < 0 or d == s for d, s in zip(dims, shape, strict=True))


# ---------------------------------------------------------------- for other processes

FAKE_TENSORRT_ENV = "FAKE_TENSORRT"  # JSON of make_fake_tensorrt's keyword arguments
REPO = Path(__file__).resolve().parent.parent


def fake_site(folder: Path, with_pycuda: bool) -> Path:
    """A folder to put first on PYTHONPATH so that `import tensorrt` (and `pycuda.driver`, unless a
    real GPU's pycuda should be used) in a child process, such as the node's plan builder, gets
    these fakes, configured by the FAKE_TENSORRT environment variable."""
    (folder / "tensorrt").mkdir(parents=True, exist_ok=True)
    (folder / "tensorrt" / "__init__.py").write_text(
        "import json, os, sys\n"
        "from tests.trt_fakes import make_fake_tensorrt\n"
        f"_fake = make_fake_tensorrt(**json.loads(os.environ.get({FAKE_TENSORRT_ENV!r}) or '{{}}'))\n"
        "sys.modules[__name__] = _fake\n")
    if with_pycuda:
        (folder / "pycuda").mkdir(exist_ok=True)
        (folder / "pycuda" / "__init__.py").write_text(
            "import sys\nfrom tests.trt_fakes import fake_pycuda\n"
            "_modules = fake_pycuda()\nsys.modules['pycuda.driver'] = _modules['pycuda.driver']\n"
            "driver = _modules['pycuda.driver']\n")
    return folder


def child_environment(site: Path, **builder: Any) -> dict[str, str]:
    """Environment variables for a child process that imports the fakes of fake_site."""
    path = os.pathsep.join([str(site), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path, FAKE_TENSORRT_ENV: json.dumps(builder)}
