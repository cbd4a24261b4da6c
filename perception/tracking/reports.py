"""What a tracker tells the node: counters for the status topic and one-off problems to report."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrackerReport:
    """For the status topic: bad input is published as state "error", an event (a reset, a cap)
    in the detail of the node's current state."""

    error: bool
    detail: str


@dataclass
class TrackerReports:
    created: int = 0  # tracks started
    resets: int = 0  # stamp went backwards: every track dropped
    dropped_invalid: int = 0  # detections with non-finite boxes or scores, or empty boxes
    capped: int = 0  # detections over max_detections in one frame
    evicted: int = 0  # tracks dropped to stay within max_tracks
    _pending: list[TrackerReport] = field(default_factory=list)

    def reset(self, last_ns: int, stamp_ns: int, tracks: int) -> None:
        self.resets += 1
        self._pending.append(TrackerReport(
            False, f"tracks reset: stamp went back {(last_ns - stamp_ns) / 1e9:.3f} s (from {last_ns} to "
                     f"{stamp_ns} ns, replay loop or clock step); {tracks} track(s) dropped, new ids follow"))

    def dropped(self, invalid: int, capped: int, limit: int) -> None:
        if invalid:
            self.dropped_invalid += invalid
            self._pending.append(TrackerReport(
                True, f"tracker dropped {invalid} detection(s) with non-finite or empty boxes or scores"))
        if capped:
            self.capped += capped
            self._pending.append(TrackerReport(
                False, f"tracker capped {capped} detection(s) over max_detections = {limit} (lowest scores)"))

    def take(self) -> list[TrackerReport]:
        """Reports since the last call, oldest first."""
        pending, self._pending = self._pending, []
        return pending

    def counters(self) -> dict[str, int]:
        return {"created": self.created, "resets": self.resets, "dropped_invalid": self.dropped_invalid,
                "capped": self.capped, "evicted": self.evicted}
