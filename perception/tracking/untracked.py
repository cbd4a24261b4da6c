"""The "none" tracker: instance ids stay 0 (tracking off)."""

from __future__ import annotations

from perception.core.segmentation import Segmentation
from perception.tracking.reports import TrackerReports


class Untracked:
    def __init__(self, **_settings: object) -> None:
        """Takes the [tracking] settings like every tracker, and needs none of them."""
        self.reports = TrackerReports()

    def update(self, segmentation: Segmentation, stamp_ns: int = 0) -> Segmentation:
        return segmentation
