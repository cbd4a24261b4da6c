"""The CUDA layer on a real GPU with the real pycuda: buffers, stream ordering, copies, events, errors."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from perception.inference.cuda import (
    CudaDevice,
    CudaError,
    DeviceBuffer,
    Event,
    PinnedBuffer,
    Stream,
    device_count,
)


def _gpu_reason() -> str:
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda is not installed (pip install 'perception-node[tensorrt]')"
    try:
        if device_count() == 0:
            return "no CUDA device"
    except CudaError as exc:
        return f"no usable CUDA driver ({exc.problem})"
    return ""


REASON = _gpu_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(REASON), reason=REASON or "GPU present")]


@pytest.fixture
def device() -> Iterator[CudaDevice]:
    with CudaDevice(0) as dev:
        yield dev


def test_device_identity(device: CudaDevice) -> None:
    assert device.name
    assert int(device.compute_capability.split(".")[0]) >= 5
    free, total = device.memory_info()
    assert 0 < free <= total == device.total_memory


def test_round_trip_through_the_gpu(device: CudaDevice) -> None:
    src = np.random.default_rng(0).random((3, 480, 640), dtype=np.float32)
    with Stream(device) as stream, PinnedBuffer(device, src.shape, src.dtype) as host_in, \
            PinnedBuffer(device, src.shape, src.dtype) as host_out, DeviceBuffer(device, src.nbytes) as dev:
        host_in.array[...] = src
        dev.upload(host_in, stream)
        dev.download(host_out, stream)
        stream.synchronize()
        np.testing.assert_array_equal(host_out.array, src)


def test_stream_keeps_order_across_many_copies(device: CudaDevice) -> None:
    shape = (1 << 20,)
    with Stream(device) as stream, DeviceBuffer(device, 4 << 20) as dev:
        hosts = [PinnedBuffer(device, shape, np.int32) for _ in range(4)]
        outs = [PinnedBuffer(device, shape, np.int32) for _ in range(4)]
        try:
            for i, (h, o) in enumerate(zip(hosts, outs, strict=True)):
                h.array[...] = i
                dev.upload(h, stream)  # same device buffer each time: order is all that keeps this right
                dev.download(o, stream)
            stream.synchronize()
            assert [int(o.array[0]) for o in outs] == [0, 1, 2, 3]
            assert all((o.array == i).all() for i, o in enumerate(outs))
        finally:
            for b in (*hosts, *outs):
                b.close()


def test_events_time_gpu_work(device: CudaDevice) -> None:
    nbytes = 64 << 20
    with Stream(device) as stream, PinnedBuffer(device, (nbytes,), np.uint8) as host, \
            DeviceBuffer(device, nbytes) as dev, Event(device) as start, Event(device) as end:
        start.record(stream)
        for _ in range(4):
            dev.upload(host, stream)
        end.record(stream)
        end.synchronize()
        assert end.done()
        elapsed = start.elapsed_ms(end)
        assert elapsed > 0  # 256 MiB over PCIe/NVLink takes measurable time


def test_buffers_work_from_another_thread(device: CudaDevice) -> None:
    """The node's worker thread is not the thread that opened the engine."""
    src = np.arange(1000, dtype=np.float32)
    result: dict[str, object] = {}
    with Stream(device) as stream, PinnedBuffer(device, src.shape, src.dtype) as host, \
            DeviceBuffer(device, src.nbytes) as dev:
        def worker() -> None:
            try:
                host.array[...] = src
                dev.upload(host, stream)
                host.array[...] = 0
                dev.download(host, stream)
                stream.synchronize()
                result["ok"] = bool((host.array == src).all())
            except CudaError as exc:
                result["error"] = exc

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert result == {"ok": True}


def test_failures_are_typed(device: CudaDevice) -> None:
    with pytest.raises(CudaError, match="does not exist"):
        CudaDevice(device_count() + 3)
    with pytest.raises(CudaError) as info:
        DeviceBuffer(device, device.total_memory * 4)
    assert "GPU memory" in info.value.problem
    with Stream(device) as stream, PinnedBuffer(device, (10,), np.float32) as host, \
            DeviceBuffer(device, 16) as dev, pytest.raises(CudaError, match="40 bytes into a 16-byte"):
        dev.upload(host, stream)
    buffer = DeviceBuffer(device, 64)
    buffer.close()
    buffer.close()
    with pytest.raises(CudaError, match="after close"):
        int(buffer)
