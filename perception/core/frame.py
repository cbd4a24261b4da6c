"""Values that cross threads: a captured frame and its per-stage monotonic stamps."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from perception.core.errors import FrameError

P = TypeVar("P")


class Stage(str, enum.Enum):
    """Pipeline stages, in order; each is stamped with CLOCK_MONOTONIC ns when it ends.

    Preprocessing runs in the capture thread, before the hand-off, so the engine's thread
    does nothing but run the engine; dequeue is when that thread took the frame, batch when the
    engine call holding it began (the wait for the other cameras' frames of its batch); handoff
    is when decoding started (the output loop took the engine's outputs), so the wait in the
    hand-off queue is a stage of its own and postprocess is the decoder's time alone.
    """

    CAPTURE = "capture"
    PREPROCESS = "preprocess"
    DEQUEUE = "dequeue"
    BATCH = "batch"
    INFERENCE = "inference"
    HANDOFF = "handoff"
    POSTPROCESS = "postprocess"
    ENCODE = "encode"
    PUBLISH = "publish"


STAGES: tuple[Stage, ...] = tuple(Stage)


def monotonic_ns() -> int:
    """CLOCK_MONOTONIC, the clock of every stage stamp (shared by all processes on a host)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


@dataclass(frozen=True)
class Frame(Generic[P]):
    """One image as the source delivered it, with what the capture thread made of it.

    stamp_ns is acquisition time in the source's clock (wall clock for live cameras,
    recorded time in replay); capture_ns is CLOCK_MONOTONIC when the capture thread got it.
    P is the type of the engine input the capture thread prepares (runtime.pipeline.Prepared);
    a frame that could not be prepared carries the reason in preprocess_error instead.
    """

    image: np.ndarray  # HxWx3 uint8 BGR
    index: int  # 0-based count of frames read from this source
    stamp_ns: int
    capture_ns: int
    prepared: P | None = None  # the engine input made by the capture thread (Pipeline.prepare), if any
    prepared_ns: int = 0  # CLOCK_MONOTONIC when `prepared` was ready
    preprocess_error: FrameError | None = None  # why this one frame could not be prepared

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"frame image must be HxWx3 uint8 BGR, got {self.image.shape} {self.image.dtype}")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class StageStamps:
    """Monotonic ns at the end of each stage of one frame; owned by the worker thread."""

    stamps: dict[str, int] = field(default_factory=dict)

    def mark(self, stage: Stage, at_ns: int | None = None) -> int:
        now = monotonic_ns() if at_ns is None else at_ns
        self.stamps[stage.value] = now
        return now

    def as_dict(self) -> dict[str, int]:
        return dict(self.stamps)
