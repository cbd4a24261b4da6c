"""Persistent instance ids for things across frames, trackers chosen by name."""
