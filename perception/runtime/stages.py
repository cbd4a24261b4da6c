"""The inference stage thread: slot -> staleness check -> engine -> hand-off.

Frames arrive preprocessed by the capture thread (Frame.prepared), so this thread's time is
the engine's.

Decoding, tracking, encoding and publishing run in the node's output loop, so they overlap
the engine's work on the next frame instead of adding to it. The hand-off queue is small
and blocking: backpressure reaches the capture slot, where live frames are dropped as
`overwritten` rather than queued.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from perception.capture.counters import DROP_ERROR, DROP_STALE, FrameCounters
from perception.capture.slot import FrameSlot, SlotClosed
from perception.core.errors import PerceptionError
from perception.core.frame import Frame, Stage, StageStamps
from perception.runtime.pipeline import Inferred, Pipeline, Prepared

HANDOFF_DEPTH = 2


@dataclass(frozen=True)
class InferredFrame:
    frame: Frame[Prepared]
    stamps: StageStamps
    inferred: Inferred


@dataclass(frozen=True)
class FrameFailed:
    frame: Frame[Prepared]
    error: PerceptionError


class StageEnded:
    """Sent once, last: the slot is closed and every frame taken has been handed off."""

    def __init__(self, crash: BaseException | None = None) -> None:
        self.crash = crash


HandOff = InferredFrame | FrameFailed | StageEnded


class InferenceThread(threading.Thread):
    def __init__(self, slot: FrameSlot[Prepared], pipeline: Pipeline, counters: FrameCounters, max_age_ns: int) -> None:
        super().__init__(name="inference", daemon=True)
        self.slot = slot
        self.pipeline = pipeline
        self.counters = counters
        self.max_age_ns = max_age_ns
        self.handoff: queue.Queue[HandOff] = queue.Queue(maxsize=HANDOFF_DEPTH)

    def run(self) -> None:
        crash: BaseException | None = None
        try:
            self._loop()
        except BaseException as exc:  # a bug: handed to the output loop, which re-raises it
            crash = exc
        finally:
            self.handoff.put(StageEnded(crash))

    def _loop(self) -> None:
        while True:
            try:
                frame = self.slot.get(timeout=0.5)
            except SlotClosed:
                return
            if frame is None:
                continue
            stamps = StageStamps({Stage.CAPTURE.value: frame.capture_ns})
            try:
                if frame.preprocess_error is not None:
                    raise frame.preprocess_error  # the capture thread could not preprocess this frame
                if frame.prepared is None:
                    prepared = self.pipeline.prepare(frame.image)
                    stamps.mark(Stage.PREPROCESS)
                else:
                    prepared = frame.prepared
                    stamps.mark(Stage.PREPROCESS, frame.prepared_ns)
                dequeued = stamps.mark(Stage.DEQUEUE)
                if self.max_age_ns and dequeued - frame.capture_ns > self.max_age_ns:
                    self.counters.add_dropped(DROP_STALE)
                    continue
                inferred = self.pipeline.run_engine(prepared, stamps)
            except PerceptionError as exc:
                self.counters.add_dropped(DROP_ERROR)
                self.handoff.put(FrameFailed(frame, exc))
                continue
            self.handoff.put(InferredFrame(frame, stamps, inferred))
