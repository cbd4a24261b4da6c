"""The Tracker protocol and the registry of trackers by name.

To add a tracker: a class whose constructor takes its [tracking] settings as keywords and
whose update() fills instance_ids (and, if it can, the track columns), then one line in
TRACKERS below (or an entry point in the group perception.trackers). A class attribute
`settings_type` (a dataclass of those keywords, validating in __post_init__) lets a launch file
be checked key by key when it is read; without one the keys are passed on unchecked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from perception.core.errors import ConfigError
from perception.core.registry import Registry
from perception.core.segmentation import Segmentation
from perception.tracking.reports import TrackerReports


@runtime_checkable
class Tracker(Protocol):
    """Gives things persistent instance ids across the frames of one camera."""

    reports: TrackerReports  # counters, and problems for the status topic

    def update(self, segmentation: Segmentation, stamp_ns: int) -> Segmentation:
        """The segmentation with instance_ids filled for things (stuff stays 0); stamp_ns is
        the frame's acquisition time in the source clock."""
        ...


class TrackerError(ConfigError):
    """A tracker that is unknown or cannot be built from the [tracking] settings."""


# name -> "module:Class"; Class(**settings) -> Tracker
TRACKERS: Registry[Tracker] = Registry(
    "tracker", Tracker, TrackerError,
    {
        "bytetrack": "perception.tracking.bytetrack:ByteTracker",
        "iou": "perception.tracking.iou:IouTracker",
        "none": "perception.tracking.untracked:Untracked",
    },
    group="perception.trackers",
)


def make_tracker(name: str, settings: Mapping[str, Any] | None = None) -> Tracker:
    return TRACKERS.create(name, **(settings or {}))


def settings_type(name: str) -> type | None:
    """The dataclass that checks a tracker's [tracking] keys, if it declares one."""
    return getattr(TRACKERS.load(name), "settings_type", None)
