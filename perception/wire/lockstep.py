"""The lock-step form of a published message: what a deterministic recording keeps of it.

A lock-step replay (`--rate 0 --deterministic`) computes the same results on every run, but the
messages that carry them also say when and how this process ran: CLOCK_MONOTONIC `publish_ns`
and stage `stamps` in every header, heartbeats and stats sent by the wall clock, preview images
sent at a rate. The lock-step form keeps what the drive produced and drops the process's time:
frame and metadata messages with `publish_ns` 0 and `stamps` empty (still valid messages for
every reader); status, stats and image messages are left out (None). The live socket is not
touched: subscribers still get every message with its real stamps.
"""

from __future__ import annotations

from collections.abc import Sequence

from perception.wire.codec import pack, unpack
from perception.wire.errors import DecodeError
from perception.wire.schema import Kind, parse_topic

KEPT = (Kind.FRAME, Kind.META)


def lockstep_form(parts: Sequence[bytes]) -> list[bytes] | None:
    """[topic, header, payload...] with the process-time fields cleared, or None for a message that
    is only the process's timing (status, stats, image)."""
    try:
        _camera, kind = parse_topic(bytes(parts[0]))
    except DecodeError:
        return None
    if kind not in KEPT or len(parts) < 2:
        return None
    header = unpack(parts[1])
    header["publish_ns"] = 0
    if kind is Kind.FRAME:
        header["stamps"] = {}
    return [bytes(parts[0]), pack(header), *(bytes(p) for p in parts[2:])]
