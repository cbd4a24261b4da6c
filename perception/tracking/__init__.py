"""Persistent instance ids for things across frames, trackers chosen by name."""

from perception.tracking.base import TRACKERS, Tracker, TrackerError, make_tracker, settings_type

__all__ = ["TRACKERS", "Tracker", "TrackerError", "make_tracker", "settings_type"]
