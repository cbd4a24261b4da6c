"""Exact loss and restart detection from (epoch, per-topic sequence number)."""

from __future__ import annotations

from dataclasses import dataclass, field

from perception.wire.schema import KINDS, Kind


@dataclass(frozen=True)
class GapEvent:
    """Messages of one topic lost between two received ones (publisher HWM or our own RCVHWM)."""

    camera: str
    kind: Kind
    epoch: int
    expected_seq: int
    seq: int

    @property
    def missed(self) -> int:
        return self.seq - self.expected_seq


@dataclass(frozen=True)
class RestartEvent:
    """The publisher of a camera started again (new epoch): sequence numbers begin anew."""

    camera: str
    old_epoch: int
    new_epoch: int
    reason: str = "epoch changed"


@dataclass
class Totals:
    """Running counts since the subscriber started.

    Every frame the node published from the first one this subscriber saw is in exactly one of
    frames_received (handed to you), missed_frames (sequence gaps), superseded (skipped by
    latest_only), stale (older than max_age_ms) or rejected (header read, payload corrupt):
    see frames_accounted and docs/protocol.md section 7.
    """

    received: int = 0  # messages decoded, all topics (including frames later skipped)
    missed: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    gaps: int = 0  # gap events, all topics
    restarts: int = 0
    decode_errors: int = 0
    frames_received: int = 0  # frames handed to the application
    superseded: int = 0  # frames received but replaced by a newer one in latest_only mode
    stale: int = 0  # frames dropped because they were older than the freshness budget
    rejected: int = 0  # frames whose header decoded but whose payload did not

    @property
    def missed_frames(self) -> int:
        return self.missed[Kind.FRAME]

    @property
    def frames_accounted(self) -> int:
        """Equals the node's published frame count (seq span seen, tail included via status)."""
        return self.frames_received + self.missed_frames + self.superseded + self.stale + self.rejected


class SequenceTracker:
    """Per camera: the current epoch and the last sequence number of each topic."""

    def __init__(self) -> None:
        self._epochs: dict[str, int] = {}
        self._last: dict[tuple[str, Kind], int] = {}

    def observe(self, camera: str, kind: Kind, epoch: int, seq: int) -> tuple[GapEvent | None, RestartEvent | None]:
        restart = None
        old = self._epochs.get(camera)
        if old is not None and old != epoch:
            restart = RestartEvent(camera, old, epoch)
        last = None if restart else self._last.get((camera, kind))
        if last is not None and seq <= last:
            # Same epoch but the count went back: only a second publisher on the same camera (or a
            # replayed stream) does that; treat it as a restart so gaps are not miscounted.
            restart = RestartEvent(camera, epoch, epoch, f"{kind.value} sequence went back from {last} to {seq}")
            last = None
        if restart is not None:
            for key in [k for k in self._last if k[0] == camera]:
                del self._last[key]
        self._epochs[camera] = epoch
        self._last[(camera, kind)] = seq
        gap = GapEvent(camera, kind, epoch, last + 1, seq) if last is not None and seq > last + 1 else None
        return gap, restart

    def published(self, camera: str, kind: Kind, epoch: int, count: int) -> GapEvent | None:
        """The publisher says it sent `count` messages of `kind` so far (status `frames`): messages
        after the last one seen that never came are lost, even when no later one arrives to show it."""
        last = self._last.get((camera, kind))
        if self._epochs.get(camera) != epoch or last is None or count <= last + 1:
            return None
        self._last[(camera, kind)] = count - 1
        return GapEvent(camera, kind, epoch, last + 1, count)
