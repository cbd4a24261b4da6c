"""An Engine that can be replaced by another between two inferences, from any thread.

The node serves on a fallback engine while a TensorRT plan builds; when the plan is ready and
checked, the lifecycle offers the new engine here. The swap itself happens in the thread that
calls infer(), at the start of its next call, so no inference ever sees half of each engine
and the frame sequence goes on without a gap. The old engine is closed by that same thread,
after its last inference has returned.

While `recording` is on, the last few (inputs, outputs) pairs are kept: the lifecycle runs the
candidate engine on the same inputs and compares before offering it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType

import numpy as np

from perception.core.errors import ModelMismatchError
from perception.core.tensors import TensorSpec
from perception.inference.engine import Engine

Sample = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]  # (inputs, outputs) of one inference


class SwappableEngine:
    """Engine protocol around a current engine; offer() a replacement, it takes over at the next infer()."""

    reuses_outputs = False  # infer() copies outputs of engines that reuse their buffers

    def __init__(self, engine: Engine, keep_samples: int = 4) -> None:
        self._current = engine
        self.name = engine.name  # the current engine's: metadata names it
        self._lock = threading.Lock()
        self._offered: tuple[Engine, Callable[[Engine], None]] | None = None
        self._samples: deque[Sample] = deque(maxlen=keep_samples)
        self.recording = False
        self._closed = False

    @property
    def current(self) -> Engine:
        return self._current

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._current.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._current.outputs

    @property
    def max_batch(self) -> int | None:
        """The current engine's (a TensorRT plan's profile top; None: any batch)."""
        return getattr(self._current, "max_batch", None)

    def samples(self) -> list[Sample]:
        """The recorded (inputs, outputs) pairs, oldest first (copies: safe to use from another thread)."""
        with self._lock:
            return list(self._samples)

    def offer(self, engine: Engine, on_swapped: Callable[[Engine], None]) -> None:
        """Make `engine` current at the next infer(); on_swapped(old) runs in that thread after the swap.

        Its inputs and outputs must be those of the current engine (the card and decoder were
        checked against those).
        """
        _require_same_io(self._current, engine)
        with self._lock:
            if self._closed:
                engine.close()
                return
            if self._offered is not None:
                self._offered[0].close()
            self._offered = (engine, on_swapped)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            offered, self._offered = self._offered, None
        if offered is not None:
            old, (self._current, on_swapped) = self._current, offered
            self.name = self._current.name
            old.close()
            on_swapped(old)
        engine = self._current
        outputs = engine.infer(feeds)
        if getattr(engine, "reuses_outputs", True):
            outputs = {name: array.copy() for name, array in outputs.items()}
        if self.recording:  # one sample per frame: a batch of several cameras is checked frame by frame
            rows = min((len(v) for v in feeds.values()), default=1)
            samples = [({k: np.array(v[i:i + 1], copy=True) for k, v in feeds.items()},
                        {k: v[i:i + 1] if rows > 1 else v for k, v in outputs.items()}) for i in range(rows)]
            with self._lock:
                self._samples.extend(samples)
        return outputs

    def close(self) -> None:
        with self._lock:
            self._closed = True
            offered, self._offered = self._offered, None
        if offered is not None:
            offered[0].close()
        self._current.close()

    def __enter__(self) -> SwappableEngine:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _require_same_io(current: Engine, candidate: Engine) -> None:
    def specs(engine: Engine) -> dict[str, tuple[tuple[object, ...], str]]:
        return {t.name: (tuple(t.shape), t.dtype) for t in (*engine.inputs, *engine.outputs)}

    def same(a: tuple[tuple[object, ...], str], b: tuple[tuple[object, ...], str]) -> bool:
        # a symbolic dimension (ONNX Runtime's dynamic batch) matches the fixed one a plan has
        return a[1] == b[1] and len(a[0]) == len(b[0]) and all(
            x == y or not isinstance(x, int) or not isinstance(y, int) for x, y in zip(a[0], b[0], strict=True))

    mine, theirs = specs(current), specs(candidate)
    if mine.keys() != theirs.keys() or not all(same(mine[n], theirs[n]) for n in mine):
        raise ModelMismatchError(f"engine {candidate.name} has I/O {specs(candidate)}, "
                                 f"{current.name} has {specs(current)}",
                                 "rebuild the plan from the card's ONNX (perception engines clear)")
