"""CUDA for the TensorRT backend: device context, stream, events, pinned and device buffers.

A thin layer over pycuda with explicit ownership: every object has close() and is a
context manager, nothing relies on __del__, and every pycuda failure leaves this module as
a CudaError that says what was being done. TensorRT uses the CUDA runtime, which works in
the device's *primary* context, so that is the context retained here (never a private one).
The context is made current around each call, so buffers can be used from any thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from perception.core.errors import MissingDependencyError
from perception.inference.errors import EngineError

INSTALL_HINT = ("pip install 'perception-node[tensorrt]' on a machine with the NVIDIA driver and CUDA toolkit "
                "(pycuda compiles against cuda.h; on Jetson it comes with JetPack)")


class CudaError(EngineError):
    """A CUDA call failed (no driver, no device, out of memory, bad launch)."""


def load_driver() -> ModuleType:
    """pycuda.driver, or a typed error saying whether pycuda or the NVIDIA driver is missing."""
    try:
        import pycuda.driver as drv
    except ImportError as exc:
        if "libcuda" in str(exc):
            raise CudaError(f"pycuda is installed but the NVIDIA driver library is missing ({exc})",
                            "install the NVIDIA driver, or use --engine onnxruntime on this machine") from exc
        raise MissingDependencyError("pycuda", "the TensorRT backend", INSTALL_HINT) from exc
    return drv


@contextlib.contextmanager
def cuda_errors(what: str) -> Iterator[None]:
    """The one place where pycuda's exceptions become CudaError with a fix."""
    drv = load_driver()
    try:
        yield
    except drv.Error as exc:
        fix = "check `perception doctor` and nvidia-smi"
        if isinstance(exc, drv.MemoryError) or "out of memory" in str(exc).lower():
            fix = "free GPU memory (other processes in nvidia-smi) or use a smaller model/precision"
        raise CudaError(f"CUDA failed to {what} ({type(exc).__name__}: {exc})", fix) from exc


def device_count() -> int:
    drv = load_driver()
    with cuda_errors("initialise the driver"):
        drv.init()
        return int(drv.Device.count())


class _Owned:
    """close() once, context manager, use-after-close is an error rather than a crash."""

    _closed = False
    _kind = "CUDA object"

    def _check_open(self) -> None:
        if self._closed:
            raise CudaError(f"{self._kind} used after close()", "keep the engine open while using it")

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class CudaDevice(_Owned):
    """One GPU and its retained primary context."""

    _kind = "CUDA device"

    def __init__(self, index: int = 0) -> None:
        drv = load_driver()
        self._drv = drv
        count = device_count()
        if not 0 <= index < count:
            raise CudaError(f"GPU {index} does not exist ({count} CUDA device(s) found)",
                            "pick a device index from nvidia-smi (EngineOptions.device / --device)")
        with cuda_errors(f"open GPU {index}"):
            self._device = drv.Device(index)
            self._context = self._device.retain_primary_context()
            major, minor = self._device.compute_capability()
            self.name: str = str(self._device.name())
            self.total_memory: int = int(self._device.total_memory())
        self.index = index
        self.compute_capability = f"{major}.{minor}"
        self._local = threading.local()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this device's context current on the calling thread for the body (re-entrant)."""
        self._check_open()
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with cuda_errors("make the GPU context current"):
                self._context.push()
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with cuda_errors("release the GPU context"):
                    self._drv.Context.pop()

    def memory_info(self) -> tuple[int, int]:
        """(free, total) bytes on this device."""
        with self.active(), cuda_errors("query GPU memory"):
            free, total = self._drv.mem_get_info()
        return int(free), int(total)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with cuda_errors("release the GPU context"):
                self._context.detach()


class Stream(_Owned):
    """An asynchronous CUDA stream; work queued on it runs in order."""

    _kind = "CUDA stream"

    def __init__(self, device: CudaDevice) -> None:
        self.device = device
        with device.active(), cuda_errors("create a stream"):
            self.raw = device._drv.Stream()

    @property
    def handle(self) -> int:
        """The cudaStream_t as an integer, for TensorRT's execute_async_v3."""
        self._check_open()
        return int(self.raw.handle)

    def synchronize(self) -> None:
        self._check_open()
        with self.device.active(), cuda_errors("synchronize the stream"):
            self.raw.synchronize()

    def close(self) -> None:
        if not self._closed:
            self.synchronize()  # nothing may still be writing into buffers about to be freed
            self._closed = True
            self.raw = None


class Event(_Owned):
    """A CUDA event: a point in a stream that the host can wait for and time against."""

    _kind = "CUDA event"

    def __init__(self, device: CudaDevice) -> None:
        self.device = device
        with device.active(), cuda_errors("create an event"):
            self.raw = device._drv.Event()

    def record(self, stream: Stream) -> None:
        self._check_open()
        with self.device.active(), cuda_errors("record an event"):
            self.raw.record(stream.raw)

    def synchronize(self) -> None:
        self._check_open()
        with self.device.active(), cuda_errors("wait for an event"):
            self.raw.synchronize()

    def done(self) -> bool:
        self._check_open()
        with self.device.active(), cuda_errors("query an event"):
            return bool(self.raw.query())

    def elapsed_ms(self, end: Event) -> float:
        """GPU time from this event to end; both must have completed."""
        self._check_open()
        with self.device.active(), cuda_errors("time between events"):
            return float(self.raw.time_till(end.raw))

    def close(self) -> None:
        self._closed = True
        self.raw = None


class PinnedBuffer(_Owned):
    """Page-locked host memory viewed as a numpy array (the only host memory DMA copies can overlap)."""

    _kind = "pinned host buffer"

    def __init__(self, device: CudaDevice, shape: tuple[int, ...], dtype: npt.DTypeLike) -> None:
        self.device = device
        with device.active(), cuda_errors(f"allocate pinned host memory {shape} {np.dtype(dtype)}"):
            self._array: np.ndarray = device._drv.pagelocked_empty(shape, np.dtype(dtype))

    @property
    def array(self) -> np.ndarray:
        self._check_open()
        return self._array

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self.device.active(), cuda_errors("free pinned host memory"):
                allocation: Any = self._array.base  # pycuda's HostAllocation owns the pages
                allocation.free()


class DeviceBuffer(_Owned):
    """Linear GPU memory of nbytes; int(buffer) is the device pointer TensorRT binds."""

    _kind = "device buffer"

    def __init__(self, device: CudaDevice, nbytes: int) -> None:
        self.device = device
        self.nbytes = int(nbytes)
        with device.active(), cuda_errors(f"allocate {self.nbytes} bytes of GPU memory"):
            self.raw = device._drv.mem_alloc(max(self.nbytes, 1))

    def __int__(self) -> int:
        self._check_open()
        return int(self.raw)

    def upload(self, host: PinnedBuffer, stream: Stream, rows: int | None = None) -> None:
        """Queue host -> device on stream; host must stay untouched until the stream passes this point.

        rows: only the first rows along axis 0 (a batch smaller than the buffer's largest)."""
        array = self._rows(host.array, rows)
        with self.device.active(), cuda_errors("queue a host-to-device copy"):
            self.device._drv.memcpy_htod_async(self.raw, array, stream.raw)

    def download(self, host: PinnedBuffer, stream: Stream, rows: int | None = None) -> None:
        """Queue device -> host on stream (rows: only the first rows along axis 0)."""
        array = self._rows(host.array, rows)
        with self.device.active(), cuda_errors("queue a device-to-host copy"):
            self.device._drv.memcpy_dtoh_async(array, self.raw, stream.raw)

    def _rows(self, array: np.ndarray, rows: int | None) -> np.ndarray:
        """The whole array, which must fill the buffer, or its first rows (a contiguous view of pinned memory)."""
        self._check_size(array)
        return array if rows is None or rows == len(array) else array[:rows]

    def _check_size(self, array: np.ndarray) -> None:
        self._check_open()
        if array.nbytes != self.nbytes:
            raise CudaError(f"copy of {array.nbytes} bytes into a {self.nbytes}-byte device buffer",
                            "allocate host and device buffers from the same tensor shape and dtype")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self.device.active(), cuda_errors("free GPU memory"):
                self.raw.free()
