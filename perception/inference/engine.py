"""The Engine protocol and the registry of backends.

Backends are found through a Registry (perception.core.registry) and imported on first use,
so the node never imports TensorRT or CUDA unless asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np

from perception.core.errors import ModelMismatchError
from perception.core.registry import Registry
from perception.core.tensors import TensorSpec
from perception.inference.errors import EngineError

# what EngineOptions.precision may be; the precision lives in the ONNX variant (docs/tensorrt.md)
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class EngineOptions:
    """Backend-neutral options; each backend reads what applies to it.

    threads: CPU intra-op threads (0 = backend default). spin: let idle threads spin-wait
    (faster alone on a core, slower when capture and publishing share the CPU).
    precision/device/cache_dir are for GPU backends. max_batch: the most frames one call takes
    (one per camera the node batches); TensorRT builds its optimization profile up to it.
    """

    threads: int = 0
    spin: bool = False
    device: int = 0
    precision: str = "fp32"
    cache_dir: Path | None = None
    max_batch: int = 1


@runtime_checkable
class Engine(Protocol):
    """What the node needs from any backend."""

    name: str

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns every output by name.

        The arrays may be overwritten by later calls unless the engine has a class attribute
        `reuses_outputs = False`; the pipeline copies them otherwise.
        """
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Engine: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def check_feeds(inputs: tuple[TensorSpec, ...], feeds: Mapping[str, np.ndarray]) -> None:
    """Refuse a feed that does not match the model's inputs, naming both."""
    for spec in inputs:
        array = feeds.get(spec.name)
        if array is None or not spec.accepts(array):
            got = "nothing" if array is None else f"{array.shape} {array.dtype}"
            raise ModelMismatchError(f"input {spec.name!r} expects {spec.shape} {spec.dtype}, got {got}",
                                     "make the model card's [input] match the ONNX graph")


# name -> "module:callable(model_path, options) -> Engine"
ENGINES: Registry[Engine] = Registry(
    "engine", Engine, EngineError,
    {
        "onnxruntime": "perception.inference.onnxruntime:open_ort_cpu",
        "tensorrt": "perception.inference.tensorrt:TrtEngine",
        "onnxruntime-gpu": "perception.inference.ort_gpu:open_ort_gpu",
    },
    group="perception.engines",
)


def available_engines() -> list[str]:
    return ENGINES.names()


def open_engine(name: str, model: Path, options: EngineOptions | None = None) -> Engine:
    return ENGINES.create(name, model, options or EngineOptions())
