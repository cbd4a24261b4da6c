"""Wire messages to bytes and back: multipart [topic, msgpack header, payload...].

Encoding is a set of pure functions of their arguments (clock passed in), so golden files
can pin the format byte for byte; decoding validates every field it uses and turns any
malformed input into a DecodeError.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import msgpack
import numpy as np

from perception.core.frame import STAGES
from perception.core.result import FrameResult
from perception.core.segmentation import Segments
from perception.wire.errors import DecodeError, SchemaVersionError, WireError
from perception.wire.limits import MAX_HEADER_BYTES, MAX_SEGMENTS, unpack_limits
from perception.wire.messages import (
    FrameMessage,
    ImageMessage,
    Message,
    MetadataMessage,
    StatsMessage,
    StatusMessage,
)
from perception.wire.payload import ID_MAP, Buffer, IdMapDecoder, IdMapEncoder, PayloadSpec
from perception.wire.predicted import predicted_from_wire, predicted_to_wire
from perception.wire.schema import SCHEMA_VERSION, STATES, Kind, check_camera, parse_topic, topic
from perception.wire.track_columns import tracks_from_wire, tracks_to_wire

UINT64_MAX = 2**64 - 1


# ---------------------------------------------------------------------------------------------
# encoding


def pack(header: Mapping[str, Any]) -> bytes:
    """msgpack with bin type for bytes; floats stay float64 so stats keep their precision."""
    try:
        return msgpack.packb(header, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(
            f"message cannot be encoded as msgpack ({exc})", "pass plain dicts, lists, str, int, float"
        ) from exc


def plain(value: Any, where: str = "message") -> Any:
    """Plain msgpack data with string map keys (integer keys written in decimal, numpy scalars as
    Python numbers): every map on the wire then reads the same in JSON, C++ and JavaScript."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for raw_key, item in value.items():
            if isinstance(raw_key, str):
                key = raw_key
            elif isinstance(raw_key, (int, np.integer)) and not isinstance(raw_key, bool):
                key = str(int(raw_key))
            else:
                raise WireError(f"{where} has a map key {raw_key!r} ({type(raw_key).__name__})", "use str keys")
            out[key] = plain(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [plain(item, where) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def segments_to_wire(segments: Segments) -> dict[str, Any]:
    """Columnar table: one list per column, row i of every list describes the same segment."""
    return {
        "count": len(segments),
        "id": segments.ids.tolist(),
        "class_id": segments.class_ids.tolist(),
        "instance_id": segments.instance_ids.tolist(),
        "is_thing": segments.is_thing.tolist(),
        "score": segments.scores.astype(np.float64).tolist(),
        "bbox": segments.bboxes.tolist(),
        "area": segments.areas.tolist(),
        **tracks_to_wire(segments.tracks),
    }


def ordered_stamps(stamps: Mapping[str, int]) -> dict[str, int]:
    """Stage stamps in pipeline order (known stages first), as plain ints."""
    known = [s.value for s in STAGES if s.value in stamps]
    extra = sorted(k for k in stamps if k not in known)
    return {k: int(stamps[k]) for k in known + extra}


def common_header(kind: Kind, camera: str, epoch: int, seq: int, publish_ns: int) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "kind": kind.value,
        "camera": camera,
        "epoch": epoch,
        "seq": seq,
        "publish_ns": publish_ns,
    }


class FrameEncoder:
    """Encodes FrameResults for one camera; stamps encode and publish with the given clock."""

    def __init__(self, camera: str, compression: str = "zstd") -> None:
        self.camera = check_camera(camera)
        self.id_maps = IdMapEncoder(compression)

    def encode(
        self, result: FrameResult, *, epoch: int, seq: int, clock: Callable[[], int]
    ) -> tuple[list[Buffer], int, int]:
        """-> ([topic, header, id_map], encode_ns, publish_ns)."""
        seg = result.segmentation
        if seg.shape != (result.height, result.width):
            raise WireError(
                f"id map is {seg.shape[1]}x{seg.shape[0]} but the frame is {result.width}x{result.height}",
                "map the segmentation back to source resolution before publishing",
            )
        spec, payload = self.id_maps.encode(seg.id_map)
        table = segments_to_wire(seg.segments)
        encode_ns = clock()
        stamps = dict(result.stamps)
        stamps["encode"] = encode_ns
        publish_ns = clock()
        stamps["publish"] = publish_ns
        header = common_header(Kind.FRAME, self.camera, epoch, seq, publish_ns)
        header.update(
            frame_index=int(result.frame_index),
            stamp_ns=int(result.stamp_ns),
            width=int(result.width),
            height=int(result.height),
            stamps=ordered_stamps(stamps),
            segments=table,
            payload=[spec.to_wire()],
        )
        if seg.predicted is not None:
            header["predicted"] = predicted_to_wire(seg.predicted)
        return [topic(self.camera, Kind.FRAME), pack(header), payload], encode_ns, publish_ns


def control_message(
    kind: Kind, camera: str, *, epoch: int, seq: int, publish_ns: int, body: Mapping[str, Any]
) -> list[Buffer]:
    """[topic, header] for meta, status and stats: body keys are merged into the header."""
    header = common_header(kind, camera, epoch, seq, publish_ns)
    header.update(body)
    return [topic(camera, kind), pack(header)]


def status_body(state: str, counters: Mapping[str, Any], detail: str, errors: int = 0) -> dict[str, Any]:
    """errors: per-frame errors this (rate-limited) `error` status stands for; the key is left out when 0."""
    if state not in STATES:
        raise WireError(f"unknown node state {state!r}", f"use one of {', '.join(STATES)}")
    body = {"state": state, "counters": plain(counters, "counters"), "detail": str(detail)}
    if errors:
        body["errors"] = int(errors)
    return body


# ---------------------------------------------------------------------------------------------
# decoding


def unpack(data: Buffer) -> dict[str, Any]:
    """One-shot unpackb per frame (never a reused Unpacker after an error), with length limits
    (perception.wire.limits) so a hostile header cannot make the reader allocate or loop for long."""
    if len(data) > MAX_HEADER_BYTES:
        raise DecodeError(f"header is {len(data)} bytes, more than the {MAX_HEADER_BYTES} a reader accepts",
                          "corrupt or hostile message")
    try:
        header = msgpack.unpackb(data, raw=False, strict_map_key=True, **unpack_limits(len(data)))
    # msgpack documents that unpack may raise exceptions outside its own hierarchy on bad input,
    # so everything it raises is turned into the one typed error the caller handles.
    except Exception as exc:
        raise DecodeError(f"header is not valid msgpack ({type(exc).__name__}: {exc})", "corrupt message") from exc
    if not isinstance(header, dict):
        raise DecodeError(f"header is a msgpack {type(header).__name__}, not a map", "corrupt message")
    return header


def _int(header: Mapping[str, Any], key: str, low: int = 0, high: int = UINT64_MAX) -> int:
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise DecodeError(
            f"header field {key!r} is {value!r}, expected an integer in [{low}, {high}]", "corrupt message"
        )
    return value


def _str(header: Mapping[str, Any], key: str) -> str:
    value = header.get(key)
    if not isinstance(value, str):
        raise DecodeError(f"header field {key!r} is {value!r}, expected a string", "corrupt message")
    return value


def _map(header: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = header.get(key)
    if not isinstance(value, dict):
        raise DecodeError(f"header field {key!r} is {type(value).__name__}, expected a map", "corrupt message")
    return MappingProxyType(value)


def segments_from_wire(raw: object) -> Segments:
    if not isinstance(raw, dict):
        raise DecodeError("header field 'segments' is not a map", "corrupt message")
    count = _int(raw, "count", 0, MAX_SEGMENTS)
    columns = {
        "id": np.uint32,
        "class_id": np.int32,
        "instance_id": np.uint32,
        "is_thing": np.bool_,
        "score": np.float32,
        "area": np.int64,
    }
    arrays: dict[str, np.ndarray] = {}
    try:
        for name, dtype in columns.items():
            column = raw.get(name)
            if not isinstance(column, list) or len(column) != count:
                raise DecodeError(f"segments.{name} is not a list of {count} values", "corrupt message")
            if dtype is np.float32:
                wide = np.asarray(column, dtype=np.float64)
                if not np.isfinite(wide).all() or (np.abs(wide) > 1e30).any():
                    raise DecodeError(f"segments.{name} has non-finite or absurd values", "corrupt message")
                column = wide
            arrays[name] = np.asarray(column, dtype=dtype) if count else np.zeros(0, dtype)
        boxes = raw.get("bbox")
        if not isinstance(boxes, list) or len(boxes) != count:
            raise DecodeError(f"segments.bbox is not a list of {count} boxes", "corrupt message")
        bboxes = np.asarray(boxes, dtype=np.int32).reshape(count, 4)
        return Segments(
            ids=arrays["id"],
            class_ids=arrays["class_id"],
            instance_ids=arrays["instance_id"],
            is_thing=arrays["is_thing"],
            scores=arrays["score"],
            bboxes=bboxes,
            areas=arrays["area"],
            tracks=tracks_from_wire(raw, count),
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise DecodeError(f"segments table is malformed ({exc})", "corrupt message") from exc


def decode_message(
    parts: Sequence[Buffer],
    *,
    receive_ns: int,
    class_names: Mapping[int, str] | None = None,
    decoder: IdMapDecoder | None = None,
) -> Message:
    """Validate and decode one multipart message. The id map is decoded lazily (FrameMessage.id_map)."""
    if len(parts) < 2:
        raise DecodeError(f"message has {len(parts)} part(s), expected [topic, header, ...]", "corrupt message")
    camera, kind = parse_topic(bytes(parts[0]))
    header = unpack(parts[1])
    schema = header.get("schema")
    if schema != SCHEMA_VERSION:
        if isinstance(schema, int) and not isinstance(schema, bool):
            raise SchemaVersionError(
                f"message has schema version {schema}, this client reads version {SCHEMA_VERSION}",
                "upgrade perception-node on the older side so both speak the same version",
            )
        raise DecodeError(f"header has no valid 'schema' (got {schema!r})", "corrupt message")
    if header.get("kind") != kind.value or header.get("camera") != camera:
        raise DecodeError(
            f"header says {header.get('camera')!r}/{header.get('kind')!r} but the topic is {camera}/{kind.value}",
            "corrupt message",
        )
    common: dict[str, Any] = {
        "camera": camera,
        "epoch": _int(header, "epoch", 1),
        "seq": _int(header, "seq"),
        "publish_ns": _int(header, "publish_ns", -(2**63), 2**63 - 1),
        "receive_ns": receive_ns,
        "header": MappingProxyType(header),
    }
    if kind is Kind.FRAME:
        return _frame(parts, header, common, class_names or {}, decoder or IdMapDecoder())
    if kind is Kind.IMAGE:
        return _image(parts, header, common)
    if len(parts) != 2:
        raise DecodeError(f"{kind.value} message has {len(parts)} parts, expected 2", "corrupt message")
    if kind is Kind.META:
        return MetadataMessage(metadata=_map(header, "metadata"), **common)
    if kind is Kind.STATUS:
        return StatusMessage(
            state=_str(header, "state"), counters=_map(header, "counters"), detail=_str(header, "detail"),
            errors=_int(header, "errors") if "errors" in header else 0, **common
        )
    return StatsMessage(stats=_map(header, "stats"), **common)


def image_message(
    camera: str, *, epoch: int, seq: int, publish_ns: int, frame_index: int, stamp_ns: int, width: int, height: int,
    data: bytes, image_format: str = "jpeg",
) -> list[Buffer]:
    """[topic, header, compressed image]: the input frame for viewers (docs/protocol.md, image)."""
    header = common_header(Kind.IMAGE, camera, epoch, seq, publish_ns)
    header.update(frame_index=frame_index, stamp_ns=stamp_ns, width=width, height=height, format=image_format)
    return [topic(camera, Kind.IMAGE), pack(header), data]


def _image(parts: Sequence[Buffer], header: dict[str, Any], common: dict[str, Any]) -> ImageMessage:
    if len(parts) != 3:
        raise DecodeError(f"image message has {len(parts)} parts, expected 3", "corrupt message")
    return ImageMessage(
        frame_index=_int(header, "frame_index", 0, 2**63 - 1),
        stamp_ns=_int(header, "stamp_ns", -(2**63), 2**63 - 1),
        width=_int(header, "width", 0, 2**31),
        height=_int(header, "height", 0, 2**31),
        format=_str(header, "format"),
        data=bytes(parts[2]),
        **common,
    )


def _frame(
    parts: Sequence[Buffer],
    header: dict[str, Any],
    common: dict[str, Any],
    class_names: Mapping[int, str],
    decoder: IdMapDecoder,
) -> FrameMessage:
    specs_raw = header.get("payload")
    if not isinstance(specs_raw, list) or len(specs_raw) != len(parts) - 2:
        raise DecodeError(
            f"header describes {len(specs_raw) if isinstance(specs_raw, list) else 'no'} payload frame(s) "
            f"but the message has {len(parts) - 2}",
            "message truncated or corrupt",
        )
    specs = [PayloadSpec.from_wire(s) for s in specs_raw]
    index = next((i for i, s in enumerate(specs) if s.name == ID_MAP), None)
    if index is None:
        raise DecodeError("frame message has no 'id_map' payload", "corrupt message")
    width, height = _int(header, "width", 0, 2**31), _int(header, "height", 0, 2**31)
    if specs[index].shape != (height, width):
        raise DecodeError(f"id map shape {specs[index].shape} is not height x width {height}x{width}", "corrupt")
    stamps = _map(header, "stamps")
    if not all(isinstance(v, int) for v in stamps.values()):
        raise DecodeError("header field 'stamps' has non-integer values", "corrupt message")
    return FrameMessage(
        frame_index=_int(header, "frame_index", 0, 2**63 - 1),
        stamp_ns=_int(header, "stamp_ns", -(2**63), 2**63 - 1),
        width=width,
        height=height,
        stamps=stamps,
        segments=segments_from_wire(header.get("segments")),
        predicted_tracks=predicted_from_wire(header.get("predicted")),
        id_map_spec=specs[index],
        payload=parts[2 + index],
        class_names=class_names,
        decoder=decoder,
        **common,
    )
