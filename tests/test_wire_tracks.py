"""Track columns of the segments table through the codec: round trip, and refused when malformed."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from perception.tracking.bytetrack import ByteTracker
from perception.wire.codec import FrameEncoder, decode_message
from perception.wire.errors import DecodeError
from perception.wire.messages import FrameMessage
from tests.wire_support import result, scene


def _encoded(tracked: bool = True) -> list[bytes]:
    tracker = ByteTracker()
    seg = scene()
    for k in range(4):
        seg = tracker.update(scene(shift=k), 1_700_000_000_000_000_000 + k * 100_000_000) if tracked else scene()
    clock = iter(range(10**9, 2 * 10**9, 1000))
    parts, _, _ = FrameEncoder("cam0").encode(result(3, seg), epoch=7, seq=0, clock=lambda: next(clock))
    return [bytes(p) for p in parts]


def _decode(parts: list[bytes]) -> FrameMessage:
    msg = decode_message(parts, receive_ns=0)
    assert isinstance(msg, FrameMessage)
    return msg


def _with_segments(parts: list[bytes], **changes: object) -> list[bytes]:
    header = msgpack.unpackb(parts[1])
    header["segments"].update(changes)
    for key, value in list(header["segments"].items()):
        if value is None:
            del header["segments"][key]
    return [parts[0], msgpack.packb(header, use_bin_type=True), *parts[2:]]


def test_track_columns_round_trip_and_read_as_object_attributes() -> None:
    msg = _decode(_encoded())
    tracks = msg.segments.tracks
    assert tracks is not None
    cars = [o for o in msg.objects if o.class_id == 2]
    assert all(o.track_state == "confirmed" and o.track_hits == 4 and o.velocity_valid for o in cars)
    assert all(o.velocity[0] == pytest.approx(10.0, abs=1.0) and o.speed > 9 for o in cars)  # 1 px per 0.1 s
    assert all(o.track_age_s == pytest.approx(0.3) and o.first_seen_ns == 1_700_000_000_000_000_000 for o in cars)
    road = msg.objects[0]
    assert (road.track_state, road.instance_id, road.velocity_valid) == ("none", 0, False)
    assert [o.instance_id for o in msg.tracks] == [o.instance_id for o in msg.objects if o.instance_id]


def test_a_frame_without_track_columns_reads_as_untracked() -> None:
    msg = _decode(_encoded(tracked=False))
    assert msg.segments.tracks is None
    assert {o.track_state for o in msg.objects} == {"none"}
    assert all(o.velocity == (0.0, 0.0) and not o.velocity_valid for o in msg.objects)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"velocity": None}, "lacks ['velocity']"),
        ({"track_state": ["none", "confirmed", "gone", "none"]}, "track_state holds a value outside"),
        ({"track_hits": [0, -1, 3, 3]}, "track_hits holds values that are not uint32"),
        ({"centroid": [[0, 0], [1, float("nan")], [0, 0], [0, 0]]}, "centroid is not (4, 2) finite numbers"),
        ({"velocity_valid": [0, 1, 1, 0]}, "velocity_valid holds values that are not booleans"),
        ({"first_seen_ns": [0, 0, 0]}, "first_seen_ns is not a list of 4 values"),
    ],
)
def test_malformed_track_columns_are_decode_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(DecodeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        _decode(_with_segments(_encoded(), **changes))


def test_decoded_columns_equal_the_encoded_ones() -> None:
    parts = _encoded()
    header = msgpack.unpackb(parts[1])
    tracks = _decode(parts).segments.tracks
    assert tracks is not None
    assert tracks.state_names() == header["segments"]["track_state"]
    np.testing.assert_array_equal(tracks.velocity, np.array(header["segments"]["velocity"], np.float32))
