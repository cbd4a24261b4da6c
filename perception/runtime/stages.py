"""The inference stage thread: the cameras' slots -> staleness check -> one engine call per batch -> hand-off.

Frames arrive preprocessed by each camera's capture thread (Frame.prepared), so this thread's
time is the engine's. It serves every camera of the node with one engine:

- a batch holds at most one frame per camera (the newest its latest-wins slot holds) and at
  most `batch` frames; once it holds one frame it waits at most `batch_timeout` for the other
  streaming cameras, so a camera that is lost or slow never holds the others back. When every
  camera is a lossless replay (--rate 0) a batch waits instead for the next frame of each camera
  in turn that has not ended: batches are then the same on every run, so lock-step output is too;
- fairness is round-robin: the camera that starts filling the next batch rotates, so when
  `batch` is smaller than the number of cameras each is served within ceil(cameras / batch)
  batches. Age-first would serve the camera whose frame waited longest, which sounds fairer but
  lets one camera with a slow clock or a long stall win every tie; round-robin bounds each
  camera's wait by the number of cameras, whatever their rates;
- a frame that could not be preprocessed (a camera sending garbage) or that is too old is
  settled at once and never enters a batch; a batch the engine refuses is retried frame by
  frame, so one bad frame fails alone.

Decoding, tracking, encoding and publishing run in the node's output loop, so they overlap
the engine's work on the next batch instead of adding to it. The hand-off queue is small and
blocking: backpressure reaches the capture slots, where live frames are dropped as
`overwritten` rather than queued.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from perception.capture.counters import DROP_ERROR, DROP_STALE, FrameCounters
from perception.capture.slot import FrameSlot, SlotClosed
from perception.core.errors import PerceptionError
from perception.core.frame import Frame, Stage, StageStamps, monotonic_ns
from perception.inference.errors import EngineFailed
from perception.runtime.pipeline import Inferred, Pipeline, Prepared

HANDOFF_DEPTH = 2
IDLE_WAIT_S = 0.5


@dataclass(frozen=True)
class Lane:
    """One camera as the scheduler sees it."""

    slot: FrameSlot[Prepared]
    counters: FrameCounters
    max_age_ns: int  # 0 = no staleness budget
    streaming: Callable[[], bool] = lambda: True  # worth waiting for: False while reconnecting or ended

    @property
    def lossless(self) -> bool:
        return self.slot.lossless


@dataclass(frozen=True)
class InferredFrame:
    lane: int
    frame: Frame[Prepared]
    stamps: StageStamps
    inferred: Inferred


@dataclass(frozen=True)
class FrameFailed:
    lane: int
    frame: Frame[Prepared]
    error: PerceptionError


class StageEnded:
    """Sent once, last: every slot is closed and every frame taken has been handed off."""

    def __init__(self, crash: BaseException | None = None) -> None:
        self.crash = crash


HandOff = InferredFrame | FrameFailed | StageEnded


class Doorbell:
    """Rung by every slot on put and close, so one thread can wait on several slots."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._rings = 0

    def ring(self) -> None:
        with self._cond:
            self._rings += 1
            self._cond.notify_all()

    @property
    def rings(self) -> int:
        return self._rings

    def wait(self, seen: int, timeout: float) -> None:
        """Until a ring after `seen`, or the timeout."""
        with self._cond:
            if self._rings == seen:
                self._cond.wait(timeout)


class InferenceThread(threading.Thread):
    def __init__(self, lanes: Sequence[Lane], pipeline: Pipeline, doorbell: Doorbell, *, batch: int = 1,
                 batch_timeout_ns: int = 0) -> None:
        super().__init__(name="inference", daemon=True)
        self.lanes = list(lanes)
        self.pipeline = pipeline
        self.doorbell = doorbell
        self.batch = max(1, batch)
        self.batch_timeout_ns = batch_timeout_ns
        self.handoff: queue.Queue[HandOff] = queue.Queue(maxsize=HANDOFF_DEPTH)
        self.batches = 0  # engine calls, for the bench's mean batch size
        self._closed = [False] * len(self.lanes)
        self._next_lane = 0
        self._lock_step = all(lane.lossless for lane in self.lanes)

    def run(self) -> None:
        crash: BaseException | None = None
        try:
            while True:
                picked = self._gather()
                if not picked:
                    return
                self._infer(picked)
        except BaseException as exc:  # a bug: handed to the output loop, which re-raises it
            crash = exc
        finally:
            self.handoff.put(StageEnded(crash))

    def _gather(self) -> list[tuple[int, Frame[Prepared], StageStamps]]:
        """The next batch; empty once every slot is closed and drained."""
        if self._lock_step:
            return self._gather_in_turn()
        picked: list[tuple[int, Frame[Prepared], StageStamps]] = []
        deadline = 0
        order = [(self._next_lane + i) % len(self.lanes) for i in range(len(self.lanes))]
        self._next_lane = (self._next_lane + 1) % len(self.lanes)
        while True:
            seen = self.doorbell.rings
            for lane in order:
                if len(picked) < self.batch and all(p[0] != lane for p in picked):
                    taken = self._take(lane)
                    if taken is not None:
                        picked.append((lane, *taken))
            if len(picked) >= self.batch or all(self._closed):
                return picked
            now = monotonic_ns()
            if picked:
                waiting_for = [i for i in order if not self._closed[i] and all(p[0] != i for p in picked)
                               and self.lanes[i].streaming()]
                if not waiting_for:
                    return picked
                if self._lock_step:
                    self.doorbell.wait(seen, IDLE_WAIT_S)
                    continue
                deadline = deadline or now + self.batch_timeout_ns
                if now >= deadline:
                    return picked
                self.doorbell.wait(seen, (deadline - now) / 1e9)
            else:
                self.doorbell.wait(seen, IDLE_WAIT_S)

    def _gather_in_turn(self) -> list[tuple[int, Frame[Prepared], StageStamps]]:
        """Lock-step: the next `batch` cameras in turn, each waited for, so every run batches alike."""
        n = len(self.lanes)
        while True:
            seen = self.doorbell.rings
            picked: list[tuple[int, Frame[Prepared], StageStamps]] = []
            for lane in [(self._next_lane + i) % n for i in range(n)]:
                while not self._closed[lane]:
                    lane_seen = self.doorbell.rings
                    taken = self._take(lane)
                    if taken is not None:
                        picked.append((lane, *taken))
                        break
                    if self._closed[lane] or not self.lanes[lane].streaming():  # ended: its close is coming
                        break
                    self.doorbell.wait(lane_seen, IDLE_WAIT_S)
                if len(picked) == self.batch:
                    self._next_lane = (lane + 1) % n
                    return picked
            if picked:
                self._next_lane = (picked[-1][0] + 1) % n
                return picked
            if all(self._closed):
                return picked
            self.doorbell.wait(seen, IDLE_WAIT_S)

    def _take(self, lane: int) -> tuple[Frame[Prepared], StageStamps] | None:
        """The lane's next frame fit for the engine; bad and stale frames are settled here."""
        if self._closed[lane]:
            return None
        spec = self.lanes[lane]
        while True:
            try:
                frame = spec.slot.take()
            except SlotClosed:
                self._closed[lane] = True
                return None
            if frame is None:
                return None
            stamps = StageStamps({Stage.CAPTURE.value: frame.capture_ns})
            if frame.preprocess_error is not None:  # the capture thread could not preprocess this frame
                spec.counters.add_dropped(DROP_ERROR)
                self.handoff.put(FrameFailed(lane, frame, frame.preprocess_error))
                continue
            if frame.prepared is None:
                try:
                    frame = _with_prepared(frame, self.pipeline.prepare(frame.image))
                except PerceptionError as exc:
                    spec.counters.add_dropped(DROP_ERROR)
                    self.handoff.put(FrameFailed(lane, frame, exc))
                    continue
            stamps.mark(Stage.PREPROCESS, frame.prepared_ns)
            dequeued = stamps.mark(Stage.DEQUEUE)
            if spec.max_age_ns and dequeued - frame.capture_ns > spec.max_age_ns:
                spec.counters.add_dropped(DROP_STALE)
                continue
            return frame, stamps

    def _infer(self, picked: list[tuple[int, Frame[Prepared], StageStamps]]) -> None:
        prepared = [f.prepared for _, f, _ in picked if f.prepared is not None]
        try:
            self.batches += 1
            results = self.pipeline.run_batch(prepared, [s for _, _, s in picked])
        except EngineFailed:  # the engine itself is broken: no frame-by-frame retry, the node ends
            raise
        except PerceptionError as exc:
            if len(picked) > 1:  # find the frame the engine refused: the others still go out
                for one in picked:
                    self._infer([one])
                return
            lane, frame, _ = picked[0]
            self.lanes[lane].counters.add_dropped(DROP_ERROR)
            self.handoff.put(FrameFailed(lane, frame, exc))
            return
        for (lane, frame, stamps), inferred in zip(picked, results, strict=True):
            self.handoff.put(InferredFrame(lane, frame, stamps, inferred))


def _with_prepared(frame: Frame[Prepared], prepared: Prepared) -> Frame[Prepared]:
    return Frame(image=frame.image, index=frame.index, stamp_ns=frame.stamp_ns, capture_ns=frame.capture_ns,
                 prepared=prepared, prepared_ns=monotonic_ns())
