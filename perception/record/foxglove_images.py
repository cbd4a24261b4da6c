"""foxglove.CompressedImage / foxglove.RawImage in protobuf or JSON, as replay reads them.

MCAP files written with Foxglove's SDKs carry camera frames in these schemas rather than
sensor_msgs. Two fixed messages need no protobuf runtime: a small wire-format reader walks
the fields (numbers from Foxglove's published .proto files) and hands the pixels on as a view.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator

from perception.record.errors import CorruptRecordingError, UnknownEncodingError
from perception.record.ros_images import ImageMessage

COMPRESSED_IMAGE = "foxglove.CompressedImage"
RAW_IMAGE = "foxglove.RawImage"
IMAGE_TYPES = frozenset({COMPRESSED_IMAGE, RAW_IMAGE})

# field numbers of foxglove/CompressedImage.proto and foxglove/RawImage.proto
_COMPRESSED = {1: "timestamp", 2: "data", 3: "format", 4: "frame_id"}
_RAW = {1: "timestamp", 2: "width", 3: "height", 4: "encoding", 5: "step", 6: "data", 7: "frame_id"}
_TIMESTAMP = {1: "seconds", 2: "nanos"}  # google.protobuf.Timestamp


def _varint(data: memoryview, pos: int, what: str) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if pos >= len(data):
            break
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise CorruptRecordingError(f"{what}: bad protobuf varint", "the message is damaged")


def _fields(data: bytes | memoryview, names: dict[int, str], what: str) -> Iterator[tuple[str, int | memoryview]]:
    """(name, value) of the known fields; varints/fixed as int, length-delimited as a view."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        key, pos = _varint(view, pos, what)
        number, wire = key >> 3, key & 7
        value: int | memoryview
        if wire == 0:
            value, pos = _varint(view, pos, what)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value = int.from_bytes(view[pos:pos + size], "little")
            pos += size
        elif wire == 2:
            length, pos = _varint(view, pos, what)
            value = view[pos:pos + length]
            pos += length
        else:
            raise CorruptRecordingError(f"{what}: protobuf wire type {wire} is not valid here",
                                        "the message is damaged")
        if pos > len(view):
            raise CorruptRecordingError(f"{what} is cut short", "the message is damaged")
        if number in names:
            yield names[number], value


def _number(fields: dict[str, int | memoryview], name: str, what: str) -> int:
    value = fields.get(name, 0)
    if not isinstance(value, int):
        raise CorruptRecordingError(f"{what}: field {name!r} is not a number", "the message is damaged")
    return value


def _stamp(seconds: int, nanos: int) -> int:
    if seconds >= 1 << 63:  # int64 on the wire is two's complement
        seconds -= 1 << 64
    if nanos >= 1 << 31:
        nanos -= 1 << 32
    return seconds * 1_000_000_000 + nanos


def _from_protobuf(data: bytes | memoryview, schema: str, what: str) -> ImageMessage:
    fields: dict[str, int | memoryview] = dict(_fields(data, _COMPRESSED if schema == COMPRESSED_IMAGE else _RAW, what))
    stamp = fields.get("timestamp")
    time = dict(_fields(stamp, _TIMESTAMP, what)) if isinstance(stamp, memoryview) else {}
    stamp_ns = _stamp(_number(time, "seconds", what), _number(time, "nanos", what))

    def text(name: str) -> str:
        value = fields.get(name, b"")
        return bytes(value).decode(errors="replace") if isinstance(value, memoryview) else ""

    pixels = fields.get("data", memoryview(b""))
    if not isinstance(pixels, memoryview):
        raise CorruptRecordingError(f"{what}: field 'data' is not bytes", "the message is damaged")
    if schema == COMPRESSED_IMAGE:
        return ImageMessage(stamp_ns, text("frame_id"), pixels, format=text("format"))
    return ImageMessage(stamp_ns, text("frame_id"), pixels, encoding=text("encoding"),
                        width=_number(fields, "width", what), height=_number(fields, "height", what),
                        step=_number(fields, "step", what))


def _from_json(data: bytes | memoryview, schema: str, what: str) -> ImageMessage:
    try:
        body = json.loads(bytes(data))
        stamp = body.get("timestamp") or {}
        stamp_ns = int(stamp.get("sec", 0)) * 1_000_000_000 + int(stamp.get("nsec", 0))
        pixels = base64.b64decode(body.get("data", ""), validate=True)
        frame_id = str(body.get("frame_id", ""))
        if schema == COMPRESSED_IMAGE:
            return ImageMessage(stamp_ns, frame_id, pixels, format=str(body.get("format", "")))
        return ImageMessage(stamp_ns, frame_id, pixels, encoding=str(body.get("encoding", "")),
                            width=int(body.get("width", 0)), height=int(body.get("height", 0)),
                            step=int(body.get("step", 0)))
    except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
        raise CorruptRecordingError(f"{what} is not a valid JSON {schema} ({exc})", "the message is damaged") from exc


def decode_foxglove_image(data: bytes | memoryview, schema: str, message_encoding: str, what: str) -> ImageMessage:
    if message_encoding == "protobuf":
        return _from_protobuf(data, schema, what)
    if message_encoding == "json":
        return _from_json(data, schema, what)
    raise UnknownEncodingError(f"{what} is {schema} in {message_encoding!r}",
                               "replay reads Foxglove images encoded as protobuf or JSON")
