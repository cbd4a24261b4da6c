"""Encoding and decoding of wire messages without sockets: round trips and corrupted input."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np
import pytest
import zstandard

from perception.core.errors import PerceptionError
from perception.wire.codec import FrameEncoder, control_message, decode_message, plain, status_body
from perception.wire.errors import DecodeError, SchemaVersionError, WireError
from perception.wire.messages import FrameMessage, Message, MetadataMessage, StatsMessage, StatusMessage
from perception.wire.payload import Buffer, IdMapDecoder, IdMapEncoder, PayloadSpec
from perception.wire.schema import Kind, parse_topic, topic
from tests.wire_support import METADATA, result, scene, wide_scene

EPOCH = 0x0123456789ABCDEF


def clock(start: int = 1_000) -> itertools.count[int]:
    return itertools.count(start, 10)


def encode(compression: str = "zstd", index: int = 3, seg=None, seq: int = 7) -> list[bytes]:
    ticks = clock()
    parts, _, _ = FrameEncoder("cam0", compression).encode(
        result(index, seg), epoch=EPOCH, seq=seq, clock=lambda: next(ticks)
    )
    return [bytes(p) for p in parts]


def decode(parts: Sequence[Buffer], names: dict[int, str] | None = None) -> Any:
    return decode_message(parts, receive_ns=10**12, class_names=names)


@pytest.mark.parametrize("compression", ["zstd", "raw", "lz4"])
@pytest.mark.parametrize("make", [scene, wide_scene], ids=["uint16", "uint32"])
def test_frame_round_trip(compression: str, make) -> None:
    if compression == "lz4":
        pytest.importorskip("lz4.frame")
    seg = make()
    msg = decode(encode(compression, seg=seg), names={1: "person", 2: "car"})
    assert isinstance(msg, FrameMessage)
    assert (msg.epoch, msg.seq, msg.frame_index, msg.camera) == (EPOCH, 7, 3, "cam0")
    assert msg.id_map.dtype == seg.id_map.dtype
    np.testing.assert_array_equal(msg.id_map, seg.id_map)
    for name in ("ids", "class_ids", "instance_ids", "is_thing", "scores", "bboxes", "areas"):
        np.testing.assert_array_equal(getattr(msg.segments, name), getattr(seg.segments, name))
    assert msg.id_map_spec.compression == compression
    for sid in seg.segments.ids.tolist():
        np.testing.assert_array_equal(msg.mask(sid), seg.id_map == sid)


def test_stamps_encode_and_publish_come_from_the_clock_in_order() -> None:
    ticks = iter([500, 600])
    parts, encode_ns, publish_ns = FrameEncoder("cam0").encode(result(0), epoch=EPOCH, seq=0, clock=lambda: next(ticks))
    header = msgpack.unpackb(parts[1])
    assert (encode_ns, publish_ns) == (500, 600)
    assert list(header["stamps"]) == ["capture", "dequeue", "inference", "encode", "publish"]
    assert header["stamps"]["publish"] == header["publish_ns"] == 600


def test_objects_summary_and_class_names() -> None:
    msg = decode(encode(), names={0: "road", 1: "person", 2: "car"})
    assert msg.summary() == "car×2 road person"
    assert [o.class_name for o in msg.objects] == ["road", "car", "car", "person"]
    assert msg.objects[1].bbox == tuple(scene().segments.bboxes[1].tolist())
    unnamed = decode(encode())
    assert unnamed.summary().startswith("class2×2")


def test_mask_of_unknown_segment_is_a_wire_error() -> None:
    msg = decode(encode())
    with pytest.raises(WireError, match="segment 99 is not in frame 3"):
        msg.mask(99)


def test_big_endian_id_map_goes_out_little_endian() -> None:
    seg = scene()
    spec, payload = IdMapEncoder("raw").encode(seg.id_map.astype(">u2"))
    assert bytes(payload) == seg.id_map.astype("<u2").tobytes()
    np.testing.assert_array_equal(IdMapDecoder().decode(spec, payload), seg.id_map)


@pytest.mark.parametrize(
    ("kind", "body", "cls"),
    [
        (Kind.META, {"metadata": METADATA}, MetadataMessage),
        (Kind.STATUS, status_body("ready", {"read": 3, "dropped": {"stale": 1}}, ""), StatusMessage),
        (Kind.STATS, {"stats": {"fps": 29.5, "stages": {}}}, StatsMessage),
    ],
)
def test_control_messages_round_trip(kind: Kind, body: dict[str, Any], cls: type[Message]) -> None:
    parts = control_message(kind, "cam0", epoch=EPOCH, seq=4, publish_ns=99, body=body)
    msg = decode(parts)
    assert isinstance(msg, cls)
    assert (msg.kind, msg.seq, msg.publish_ns, msg.receive_ns - msg.publish_ns) == (kind, 4, 99, 10**12 - 99)


def test_metadata_class_names_from_model_card_or_class_names_map() -> None:
    meta = decode(control_message(Kind.META, "cam0", epoch=EPOCH, seq=0, publish_ns=1, body={"metadata": METADATA}))
    assert meta.class_names == {0: "road", 1: "person", 2: "car"}
    by_map = plain({"class_names": {0: "road", 5: "bus"}})
    meta = decode(control_message(Kind.META, "cam0", epoch=EPOCH, seq=0, publish_ns=1, body={"metadata": by_map}))
    assert meta.class_names == {0: "road", 5: "bus"}


def test_plain_normalizes_keys_and_numpy_and_refuses_odd_keys() -> None:
    assert plain({1: np.int64(3), "x": (np.float32(0.5), np.array([1, 2]))}) == {"1": 3, "x": [0.5, [1, 2]]}
    with pytest.raises(WireError, match="map key"):
        plain({"counters": {(1, 2): 3}})


def test_unknown_status_state_and_compression_and_camera_are_refused() -> None:
    with pytest.raises(WireError, match="unknown node state 'running'"):
        status_body("running", {}, "")
    with pytest.raises(WireError, match="unknown compression 'gzip'"):
        FrameEncoder("cam0", "gzip")
    with pytest.raises(WireError, match="camera name"):
        FrameEncoder("front/left")


def test_frame_whose_id_map_is_not_source_size_is_refused() -> None:
    seg = scene(32, 24)
    bad = result(0, seg)
    bad = type(bad)(bad.camera, 0, 0, 64, 48, seg, {})
    with pytest.raises(WireError, match="map the segmentation back to source resolution"):
        FrameEncoder("cam0").encode(bad, epoch=EPOCH, seq=0, clock=lambda: 0)


def test_topics_end_with_a_delimiter_so_cam0_is_not_a_prefix_of_cam01() -> None:
    assert topic("cam0", Kind.FRAME) == b"perception/cam0/frame/"
    assert not topic("cam01", Kind.FRAME).startswith(topic("cam0", Kind.FRAME))
    assert parse_topic(b"perception/cam01/stats/") == ("cam01", Kind.STATS)


def _header(parts: list[bytes]) -> dict:
    return msgpack.unpackb(parts[1])


def _with_header(parts: list[bytes], **changes) -> list[bytes]:
    header = _header(parts)
    header.update(changes)
    return [parts[0], msgpack.packb(header), *parts[2:]]


def _segments_change(parts: list[bytes], **changes) -> list[bytes]:
    header = _header(parts)
    header["segments"].update(changes)
    return [parts[0], msgpack.packb(header), *parts[2:]]


def _payload_change(parts: list[bytes], **changes) -> list[bytes]:
    header = _header(parts)
    header["payload"][0].update(changes)
    return [parts[0], msgpack.packb(header), *parts[2:]]


def _bomb(parts: list[bytes]) -> list[bytes]:
    """A valid zstd frame that declares (and holds) far more bytes than the header allows."""
    return [parts[0], parts[1], zstandard.ZstdCompressor().compress(bytes(50_000_000))]


CORRUPTIONS = {
    "one part": lambda p: p[:1],
    "garbage header": lambda p: [p[0], b"\xc1\xff\x00garbage", p[2]],
    "header not a map": lambda p: [p[0], msgpack.packb([1, 2, 3]), p[2]],
    "truncated header": lambda p: [p[0], p[1][: len(p[1]) // 2], p[2]],
    "no schema": lambda p: _with_header(p, schema=None),
    "topic not ours": lambda p: [b"camera/frames", *p[1:]],
    "kind differs from topic": lambda p: _with_header(p, kind="stats"),
    "camera differs from topic": lambda p: _with_header(p, camera="cam9"),
    "zero epoch": lambda p: _with_header(p, epoch=0),
    "negative seq": lambda p: _with_header(p, seq=-1),
    "seq is text": lambda p: _with_header(p, seq="7"),
    "payload frame missing": lambda p: p[:2],
    "extra payload frame": lambda p: [*p, b"x"],
    "truncated zstd payload": lambda p: [p[0], p[1], p[2][: len(p[2]) // 2]],
    "zstd payload garbage": lambda p: [p[0], p[1], b"\x00" * 64],
    "zstd bomb": _bomb,
    "nbytes lies": lambda p: _payload_change(p, nbytes=12),
    "huge shape": lambda p: _with_header(
        _payload_change(p, shape=[100000, 100000], nbytes=2 * 10**10), width=100000, height=100000
    ),
    "shape differs from width/height": lambda p: _with_header(p, width=10),
    "float dtype": lambda p: _payload_change(p, dtype="float32"),
    "unknown compression": lambda p: _payload_change(p, compression="brotli"),
    "segment column short": lambda p: _segments_change(p, score=[0.5]),
    "segment ids duplicated": lambda p: _segments_change(p, id=[1, 1, 2, 3]),
    "segment bbox wrong width": lambda p: _segments_change(p, bbox=[[1, 2, 3]] * 4),
    "segment class is text": lambda p: _segments_change(p, class_id=["a", "b", "c", "d"]),
    "stamps not ints": lambda p: _with_header(p, stamps={"capture": "now"}),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupted_frames_raise_decode_error(corrupt) -> None:
    parts = corrupt(encode())
    with pytest.raises(DecodeError) as info:
        decode(parts).id_map  # noqa: B018
    assert isinstance(info.value, PerceptionError)
    assert info.value.fix


def test_raw_payload_truncated_is_a_decode_error() -> None:
    parts = encode("raw")
    msg = decode([parts[0], parts[1], parts[2][:-2]])
    with pytest.raises(DecodeError, match="raw payload has"):
        _ = msg.id_map


def test_newer_schema_version_names_the_versions() -> None:
    with pytest.raises(SchemaVersionError, match="schema version 2, this client reads version 1"):
        decode(_with_header(encode(), schema=2))


def test_unknown_header_keys_are_ignored_for_forward_compatibility() -> None:
    msg = decode(_with_header(encode(), future_field={"a": 1}))
    assert msg.header["future_field"] == {"a": 1}


def test_payload_spec_from_wire_rejects_bool_dimensions() -> None:
    with pytest.raises(DecodeError):
        PayloadSpec.from_wire({"name": "id_map", "dtype": "uint16", "shape": [True, 2], "compression": "raw"})


def _mutations(parts: list[bytes], rng: np.random.Generator) -> list[bytes]:
    """Flip, insert, delete or cut bytes of one random part (topic excluded: it has its own test)."""
    out = list(parts)
    i = int(rng.integers(1, len(parts)))
    data = bytearray(out[i])
    action = int(rng.integers(4))
    if action == 0 and data:
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
    elif action == 1:
        at = int(rng.integers(len(data) + 1))
        data[at:at] = rng.integers(0, 256, int(rng.integers(1, 8)), dtype=np.uint8).tobytes()
    elif action == 2 and data:
        at = int(rng.integers(len(data)))
        del data[at : at + int(rng.integers(1, 8))]
    else:
        del data[int(rng.integers(len(data) + 1)) :]
    out[i] = bytes(data)
    return out


@pytest.mark.parametrize("compression", ["zstd", "raw"])
def test_mutated_messages_decode_or_raise_decode_error_never_anything_else(compression: str) -> None:
    rng = np.random.default_rng(2024)
    base = encode(compression)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(1500):
        try:
            msg = decode(_mutations(base, rng), names={0: "road"})
            msg.id_map  # noqa: B018
            msg.summary()
            msg.objects  # noqa: B018
            outcomes["decoded"] += 1
        except DecodeError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 1500
