"""The Tracker protocol and the registry of trackers by name.

To add a tracker: a class whose constructor takes the [tracking] settings as keywords
(ignoring none it is given; see IouTracker) and whose update() fills instance_ids, then one
line in TRACKERS below (or an entry point in the group perception.trackers).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from perception.core.errors import ConfigError
from perception.core.registry import Registry
from perception.core.segmentation import Segmentation


@runtime_checkable
class Tracker(Protocol):
    """Gives things persistent instance ids across the frames of one camera."""

    def update(self, segmentation: Segmentation) -> Segmentation:
        """The segmentation with instance_ids filled for things (stuff stays 0)."""
        ...


class TrackerError(ConfigError):
    """A tracker that is unknown or cannot be built from the [tracking] settings."""


# name -> "module:Class"; Class(iou_threshold=..., max_missed=...) -> Tracker
TRACKERS: Registry[Tracker] = Registry(
    "tracker", Tracker, TrackerError,
    {
        "iou": "perception.tracking.iou:IouTracker",
        "none": "perception.tracking.untracked:Untracked",
    },
    group="perception.trackers",
)


def make_tracker(name: str, *, iou_threshold: float, max_missed: int) -> Tracker:
    return TRACKERS.create(name, iou_threshold=iou_threshold, max_missed=max_missed)
