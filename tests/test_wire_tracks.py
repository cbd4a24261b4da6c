"""Track columns of the segments table, and the predicted (lost) tracks beside it, through the
codec: round trip, and refused when malformed."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from perception.core.segmentation import Segmentation
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


def _hidden_car() -> tuple[list[bytes], int]:
    """Four frames of the scene, then one in which the second car is hidden: (parts, its id)."""
    tracker = ByteTracker()
    for k in range(4):
        seen = tracker.update(scene(shift=k), 1_700_000_000_000_000_000 + k * 100_000_000)
    hidden_id = int(seen.segments.instance_ids[2])
    frame = scene(shift=4)
    id_map = np.where(frame.id_map == 3, 0, frame.id_map)  # gone from the picture
    frame = Segmentation.from_id_map(id_map, np.array([0, 2, 2, 1]), np.array([1.0, 0.9, 0.75, 0.5]),
                                     np.array([False, True, True, True]))
    seg = tracker.update(frame, 1_700_000_000_000_000_000 + 4 * 100_000_000)
    clock = iter(range(10**9, 2 * 10**9, 1000))
    parts, _, _ = FrameEncoder("cam0").encode(result(4, seg), epoch=7, seq=0, clock=lambda: next(clock))
    return [bytes(p) for p in parts], hidden_id


def _with_predicted(parts: list[bytes], **changes: object) -> list[bytes]:
    header = msgpack.unpackb(parts[1])
    header["predicted"].update(changes)
    return [parts[0], msgpack.packb(header, use_bin_type=True), *parts[2:]]


def test_a_hidden_track_is_sent_as_predicted_never_as_a_segment() -> None:
    parts, hidden_id = _hidden_car()
    msg = _decode(parts)
    assert hidden_id not in [o.instance_id for o in msg.objects]  # not in the table, not in the id map
    (lost,) = msg.predicted
    assert lost.instance_id == hidden_id and lost.class_id == 2
    assert lost.lost_s == pytest.approx(0.1) and lost.first_seen_ns == 1_700_000_000_000_000_000
    assert lost.velocity[0] == pytest.approx(10.0, abs=1.0) and lost.speed > 9  # it kept moving right
    x0, y0, x1, y1 = lost.bbox
    assert x0 < lost.centroid[0] < x1 and y0 < lost.centroid[1] < y1
    assert msgpack.unpackb(parts[1])["predicted"]["count"] == 1


def test_a_frame_without_predicted_tracks_reads_as_none_predicted() -> None:
    msg = _decode(_encoded(tracked=False))
    assert msg.predicted_tracks is None and msg.predicted == []
    tracked = _decode(_encoded())  # a predicting tracker with nothing lost: an empty table
    assert tracked.predicted_tracks is not None and tracked.predicted == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"count": -1}, "predicted.count is not a non-negative integer"),
        ({"instance_id": [0]}, "predicted.instance_id is not a list of 1 integers"),
        ({"bbox": [[1.0, 2.0, 3.0]]}, "predicted.bbox is not (1, 4) finite numbers"),
        ({"velocity": [[float("inf"), 0.0]]}, "predicted.velocity is not (1, 2) finite numbers"),
        ({"lost_s": []}, "predicted.lost_s is not (1,) finite numbers"),
        ({"first_seen_ns": [True]}, "predicted.first_seen_ns is not a list of 1 integers"),
    ],
)
def test_malformed_predicted_tables_are_decode_errors(changes: dict[str, object], message: str) -> None:
    parts, _ = _hidden_car()
    with pytest.raises(DecodeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        _decode(_with_predicted(parts, **changes))
