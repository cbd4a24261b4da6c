"""A subscriber written only from docs/protocol.md, as a C++ or JavaScript author would.

It deliberately imports nothing from `perception`: plain pyzmq, msgpack, zstandard and numpy.
If this file needs the package's code to understand a message, the protocol doc is incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq
import zstandard

SCHEMA = 1
KINDS = ("frame", "meta", "status", "stats")
DTYPES = {"uint16": "<u2", "uint32": "<u4"}


class ProtocolViolation(Exception):
    """The message breaks a rule of docs/protocol.md."""


@dataclass
class Decoded:
    camera: str
    kind: str
    header: dict[str, Any]
    id_map: np.ndarray | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)
    predicted: list[dict[str, Any]] = field(default_factory=list)  # section 5.1.1, lost tracks


def decode(parts: list[bytes], names: dict[int, str] | None = None) -> Decoded:
    """Sections 2-6 of docs/protocol.md."""
    if len(parts) < 2:
        raise ProtocolViolation("fewer than two parts")
    topic = parts[0].decode("ascii")
    pieces = topic.split("/")
    if len(pieces) != 4 or pieces[0] != "perception" or pieces[3] != "" or pieces[2] not in KINDS:
        raise ProtocolViolation(f"bad topic {topic!r}")
    camera, kind = pieces[1], pieces[2]
    try:
        header = msgpack.unpackb(parts[1], raw=False)
    except Exception as exc:  # any msgpack failure means a broken header
        raise ProtocolViolation(f"header is not msgpack: {exc}") from exc
    if not isinstance(header, dict) or header.get("schema") != SCHEMA:
        raise ProtocolViolation("header is not a schema 1 map")
    if header.get("kind") != kind or header.get("camera") != camera:
        raise ProtocolViolation("header disagrees with topic")
    out = Decoded(camera=camera, kind=kind, header=header)
    if kind != "frame":
        if len(parts) != 2:
            raise ProtocolViolation(f"{kind} message with {len(parts)} parts")
        return out
    payload = header["payload"]
    if len(payload) != len(parts) - 2:
        raise ProtocolViolation("payload descriptions do not match parts")
    for i, desc in enumerate(payload):
        if desc["name"] == "id_map":
            out.id_map = rebuild_id_map(desc, parts[2 + i])
    if out.id_map is None or out.id_map.shape != (header["height"], header["width"]):
        raise ProtocolViolation("no id map of height x width")
    seg = header["segments"]
    names = names or {}
    for i in range(seg["count"]):
        class_id = seg["class_id"][i]
        out.objects.append(
            {
                "id": seg["id"][i],
                "class_id": class_id,
                "class_name": names.get(class_id, f"class{class_id}"),
                "instance_id": seg["instance_id"][i],
                "is_thing": seg["is_thing"][i],
                "score": seg["score"][i],
                "bbox": seg["bbox"][i],
                "area": seg["area"][i],
                **track_fields(seg, i),
            }
        )
    out.predicted = predicted_tracks(header.get("predicted"), out.objects)
    return out


PREDICTED_COLUMNS = ("instance_id", "class_id", "bbox", "centroid", "velocity", "first_seen_ns", "lost_s")


def predicted_tracks(table: dict[str, Any] | None, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Section 5.1.1, `predicted`: optional; `count` entries per column; never a seen object."""
    if table is None:
        return []
    count = table["count"]
    if any(len(table[column]) != count for column in PREDICTED_COLUMNS):
        raise ProtocolViolation("predicted columns of different lengths")
    rows = [{column: table[column][i] for column in PREDICTED_COLUMNS} for i in range(count)]
    seen = {o["instance_id"] for o in objects if o["instance_id"]}
    if any(r["instance_id"] in seen for r in rows):
        raise ProtocolViolation("a predicted track is also a segment of the frame")
    return rows


TRACK_COLUMNS = ("track_state", "track_age_s", "track_hits", "first_seen_ns", "centroid", "velocity", "velocity_valid")


def track_fields(seg: dict[str, Any], i: int) -> dict[str, Any]:
    """Section 5.1.1, track columns: all seven or none (a node without a tracker: untracked)."""
    present = [c for c in TRACK_COLUMNS if c in seg]
    if not present:
        return {"track_state": "none"}
    if len(present) != len(TRACK_COLUMNS):
        raise ProtocolViolation(f"only some track columns: {present}")
    state = seg["track_state"][i]
    if state not in ("none", "tentative", "confirmed"):
        raise ProtocolViolation(f"track_state {state!r} on a row")
    return {column: seg[column][i] for column in TRACK_COLUMNS}


def rebuild_id_map(desc: dict[str, Any], data: bytes) -> np.ndarray:
    """Section 6: decompress, check nbytes, little-endian row-major [height, width]."""
    compression = desc["compression"]
    if compression == "zstd":
        try:
            raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=desc["nbytes"])
        except zstandard.ZstdError as exc:
            raise ProtocolViolation(f"zstd: {exc}") from exc
    elif compression == "raw":
        raw = data
    else:
        raise ProtocolViolation(f"compression {compression!r} not supported by this reader")
    if len(raw) != desc["nbytes"]:
        raise ProtocolViolation(f"{len(raw)} bytes, expected {desc['nbytes']}")
    height, width = desc["shape"]
    return np.frombuffer(raw, dtype=DTYPES[desc["dtype"]]).reshape(height, width)


def class_names(metadata: dict[str, Any]) -> dict[int, str]:
    """Section 5.2: class_names, else classes, else model.classes."""
    if isinstance(metadata.get("class_names"), dict):
        return {int(k): v for k, v in metadata["class_names"].items()}
    classes = metadata.get("classes")
    if classes is None:
        classes = metadata.get("model", {}).get("classes", [])
    return {c["id"]: c["name"] for c in classes}


def mask(decoded: Decoded, segment_id: int) -> np.ndarray:
    """Section 5.1.1: a segment's mask is its pixels in the id map."""
    if decoded.id_map is None:
        raise ProtocolViolation("only frame messages have masks")
    return decoded.id_map == segment_id


class Reader:
    """Subscribes to frames and metadata of one camera; counts gaps per section 7."""

    def __init__(self, endpoint: str, camera: str = "cam0") -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        for kind in ("frame", "meta"):
            self.socket.setsockopt(zmq.SUBSCRIBE, f"perception/{camera}/{kind}/".encode())
        self.socket.connect(endpoint)
        self.names: dict[int, str] = {}
        self.epoch: int | None = None
        self.last_seq: int | None = None
        self.missed = 0

    def next_frame(self, timeout_ms: int) -> Decoded | None:
        while self.socket.poll(timeout_ms):
            decoded = decode(self.socket.recv_multipart(), self.names)
            if decoded.kind == "meta":
                self.names = class_names(decoded.header["metadata"])
                continue
            epoch, seq = decoded.header["epoch"], decoded.header["seq"]
            if epoch == self.epoch and self.last_seq is not None and seq > self.last_seq + 1:
                self.missed += seq - self.last_seq - 1
            self.epoch, self.last_seq = epoch, seq
            return decoded
        return None

    def close(self) -> None:
        self.socket.close()
        self.context.term()
