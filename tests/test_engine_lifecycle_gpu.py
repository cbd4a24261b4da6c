"""The lifecycle scenario with a real TensorRT on a real GPU (`pytest -m gpu`); skipped elsewhere.

A real plan build for the tiny test model in a real builder process, the swap from ONNX
Runtime, then a second start straight from the cached plan.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.lifecycle_support import check_contiguous, frames_after, lifecycle_launch, serve_until


def _reason() -> str:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'perception-node[tensorrt]')"
    from tests.test_trt_engine import REAL_GPU

    return "" if REAL_GPU else "no NVIDIA GPU with pycuda here"


REASON = _reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(REASON), reason=REASON or "GPU and TensorRT present")]


def test_real_build_swap_then_cached_start(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = serve_until(lifecycle_launch(tmp_path / "first", cache, frames=3000),  # a real build takes a while
                        frames_after("switched from onnxruntime to tensorrt", 10), timeout_s=600.0)
    assert first.error is None, first.error
    check_contiguous(first)
    assert first.engines()[0] == "onnxruntime" and first.engines()[-1] == "tensorrt"
    second = serve_until(lifecycle_launch(tmp_path / "second", cache),
                         lambda heard: sum(m.kind == "frame" for m in heard) >= 10)
    check_contiguous(second)
    assert set(second.engines()) == {"tensorrt"}
    assert "serving on tensorrt (cached plan)" in second.details("ready")
