"""Errors about recordings: files that are missing, cut off, corrupted, empty, or hold no usable images.

Every message names the file, and where a topic is involved, the topic and what is available.
"""

from __future__ import annotations

from perception.core.errors import PerceptionError, SourceError


class RecordingError(SourceError):
    """A recording (MCAP, rosbag2, ROS 1 bag) that cannot be read as asked.

    A SourceError too, so a replay source failing to open is reported like any other source.
    """


class CorruptRecordingError(RecordingError):
    """Bytes that are not what the format says: bad magic, CRC mismatch, impossible record."""


class TruncatedRecordingError(CorruptRecordingError):
    """A file that ends inside a record: cut off, or written by a process that was killed mid-write."""


class EmptyRecordingError(RecordingError):
    """A recording (or the chosen time range of it) that holds no image messages."""


class TopicError(RecordingError):
    """A topic that is not in the recording, is not an image topic, or a choice that is ambiguous."""

    retry_helps = False  # the recording will not grow that topic


class UnknownEncodingError(RecordingError):
    """An image encoding (or compressed format) the replay cannot turn into BGR."""


class RecordingWriteError(PerceptionError):
    """Something that cannot be written into a recording as given (bad image, ids out of range)."""


def topic_listing(topics: dict[str, str]) -> str:
    """'a (sensor_msgs/msg/Image), b (...)' for error messages; '(none)' when empty."""
    if not topics:
        return "(none)"
    return ", ".join(f"{name} ({kind})" for name, kind in sorted(topics.items()))
