"""Writes the golden wire messages of tests/golden/ (run: python -m tests.golden.make_golden).

Everything that varies at run time is fixed here (epoch, stamps, clock), so the same encoder
always produces the same bytes; tests/test_protocol_golden.py checks that it still does.
Only regenerate after a deliberate, documented format change (and bump `schema` if readers
would break, docs/protocol.md section 9).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zstandard

from perception.core.result import FrameResult
from perception.core.segmentation import Segmentation, Segments
from perception.core.tracks import CONFIRMED, NONE, TENTATIVE, PredictedTracks, TrackColumns
from perception.wire.codec import FrameEncoder, control_message, status_body
from perception.wire.schema import Kind

HERE = Path(__file__).parent
EPOCH = 0x0123456789ABCDEF
CAMERA = "cam0"
STAMP_NS = 1_700_000_000_123_456_789
STAMPS = {
    "capture": 5_000_000_000,
    "preprocess": 5_000_400_000,
    "dequeue": 5_002_000_000,
    "inference": 5_020_000_000,
    "postprocess": 5_023_000_000,
}
CLASSES = [
    {"id": 0, "name": "road", "thing": False},
    {"id": 1, "name": "person", "thing": True},
    {"id": 2, "name": "car", "thing": True},
]
METADATA: dict[str, Any] = {
    "camera": CAMERA,
    "source": "synthetic:?seed=7",
    "engine": "onnxruntime",
    "model": {
        "name": "golden-model",
        "onnx": "golden.onnx",
        "decoder": "panoptic_deeplab",
        "decoder_params": {"threshold": 0.1},
        "input": {"name": "image", "width": 64, "height": 48, "layout": "NCHW", "color": "RGB", "dtype": "float32"},
        "classes": CLASSES,
    },
    "class_names": {"0": "road", "1": "person", "2": "car"},
    "versions": {"perception": "0.1.0"},
}
COUNTERS = {"read": 120, "processed": 117, "dropped": {"overwritten": 2, "stale": 1}}
ROW = {"p50_ns": 1_500_000, "p90_ns": 2_000_000, "p99_ns": 2_500_000, "max_ns": 4_000_000, "count": 117}
STATS = {
    "clock": "CLOCK_MONOTONIC",
    "window_frames": 117,
    "fps": 29.75,
    "stages": dict.fromkeys(("preprocess", "dequeue", "inference", "postprocess", "encode", "publish"), ROW),
    "end_to_end": {
        "p50_ns": 25_000_000,
        "p90_ns": 30_000_000,
        "p99_ns": 34_000_000,
        "max_ns": 41_000_000,
        "count": 117,
    },
    "counters": COUNTERS,
}


def street(width: int = 64, height: int = 48) -> Segmentation:
    """Road, two tracked cars and a person; uint16 ids 1..4."""
    id_map = np.zeros((height, width), np.uint16)
    id_map[32:, :] = 1
    id_map[12:24, 2:16] = 2
    id_map[16:32, 32:40] = 3
    id_map[6:16, 52:62] = 4
    seg = Segmentation.from_id_map(
        id_map, np.array([0, 2, 2, 1]), np.array([1.0, 0.9, 0.75, 0.5]), np.array([False, True, True, True])
    )
    return Segmentation(seg.id_map, seg.segments.with_instance_ids(np.array([0, 11, 12, 13])))


def tracked_street() -> Segmentation:
    """The street with the tracker's columns: a confirmed car moving left, a confirmed car not
    moving yet known, a tentative person (velocity not valid); the road untracked."""
    seg = street()
    tracks = TrackColumns(
        state=np.array([NONE, CONFIRMED, CONFIRMED, TENTATIVE], np.uint8),
        age_s=np.array([0.0, 2.5, 0.75, 0.125]),
        hits=np.array([0, 25, 8, 2], np.uint32),
        first_seen_ns=np.array([0, STAMP_NS - 2_500_000_000, STAMP_NS - 750_000_000, STAMP_NS - 125_000_000], np.int64),
        centroid=np.array([[0.0, 0.0], [9.0, 18.0], [36.0, 24.0], [57.0, 11.0]], np.float32),
        velocity=np.array([[0.0, 0.0], [-12.5, 0.25], [0.0, 0.0], [3.0, -1.5]], np.float32),
        velocity_valid=np.array([False, True, True, False]),
    )
    return Segmentation(seg.id_map, seg.segments.with_instance_ids(seg.segments.instance_ids, tracks))


def predicted_street() -> Segmentation:
    """The tracked street and a car that is hidden in this frame but still predicted, half out of
    the picture on the left: in the `predicted` table only, not in the id map or segments."""
    seg = tracked_street()
    predicted = PredictedTracks(
        instance_ids=np.array([9], np.uint32),
        class_ids=np.array([2], np.int64),
        bboxes=np.array([[-4.5, 20.0, 7.5, 30.0]]),
        centroid=np.array([[1.5, 25.0]]),
        velocity=np.array([[-20.0, 0.5]]),
        first_seen_ns=np.array([STAMP_NS - 4_000_000_000], np.int64),
        lost_s=np.array([0.25]),
    )
    return Segmentation(seg.id_map, seg.segments, predicted)


def wide(width: int = 40, height: int = 30) -> Segmentation:
    """A uint32 id map: one segment id above 65535."""
    id_map = np.zeros((height, width), np.uint32)
    id_map[5:15, 10:30] = 70000
    segments = Segments(
        ids=np.array([70000], np.uint32),
        class_ids=np.array([1], np.int32),
        instance_ids=np.array([7], np.uint32),
        is_thing=np.array([True]),
        scores=np.array([0.625], np.float32),
        bboxes=np.array([[10, 5, 30, 15]], np.int32),
        areas=np.array([200], np.int64),
    )
    return Segmentation(id_map, segments)


def empty(width: int = 32, height: int = 24) -> Segmentation:
    return Segmentation(np.zeros((height, width), np.uint16), Segments.empty())


def frame(seg: Segmentation, compression: str, seq: int, index: int) -> list[bytes]:
    clock = itertools.count(5_024_000_000, 100_000)  # encode, then publish
    h, w = seg.shape
    result = FrameResult(CAMERA, index, STAMP_NS, w, h, seg, dict(STAMPS))
    parts, _, _ = FrameEncoder(CAMERA, compression).encode(result, epoch=EPOCH, seq=seq, clock=lambda: next(clock))
    return [bytes(p) for p in parts]


def doc_example() -> list[bytes]:
    """The small frame message docs/protocol.md shows in hex: a 4x2 raw id map, road and one car."""
    id_map = np.array([[2, 2, 0, 1], [1, 1, 1, 1]], np.uint16)
    segments = Segments(
        ids=np.array([1, 2], np.uint32),
        class_ids=np.array([0, 2], np.int32),
        instance_ids=np.array([0, 5], np.uint32),
        is_thing=np.array([False, True]),
        scores=np.array([1.0, 0.875], np.float32),
        bboxes=np.array([[0, 0, 4, 2], [0, 0, 2, 1]], np.int32),
        areas=np.array([5, 2], np.int64),
    )
    clock = itertools.count(1_000_300, 100)  # encode, then publish
    result = FrameResult(CAMERA, 42, 1_000_000_000, 4, 2, Segmentation(id_map, segments), {"capture": 1_000_000})
    parts, _, _ = FrameEncoder(CAMERA, "raw").encode(result, epoch=DOC_EPOCH, seq=3, clock=lambda: next(clock))
    return [bytes(p) for p in parts]


DOC_EPOCH = 0xC0FFEE0123456789  # above 2**63: the example shows why readers need an unsigned 64-bit integer


def hex_dump(data: bytes) -> str:
    """16 bytes a line, offset first, as docs/protocol.md prints them."""
    return "\n".join(f"{offset:04x}  {data[offset:offset + 16].hex(' ')}" for offset in range(0, len(data), 16))


def control(kind: Kind, seq: int, body: dict[str, Any]) -> list[bytes]:
    return [bytes(p) for p in control_message(kind, CAMERA, epoch=EPOCH, seq=seq, publish_ns=6_000_000_000, body=body)]


def _with_header(parts: list[bytes], **changes: Any) -> list[bytes]:
    header = msgpack.unpackb(parts[1])
    header.update(changes)
    return [parts[0], msgpack.packb(header, use_bin_type=True), *parts[2:]]


def build_messages() -> dict[str, tuple[bool, str, list[bytes]]]:
    """name -> (valid, description, parts)."""
    good = frame(street(), "zstd", 7, 3)
    raw = frame(street(), "raw", 8, 4)
    return {
        "frame_zstd_uint16": (True, "64x48 street scene, 4 segments, zstd", good),
        "frame_raw_uint16": (True, "the same scene, raw payload", raw),
        "frame_zstd_uint32": (True, "40x30 uint32 id map, segment id 70000", frame(wide(), "zstd", 9, 5)),
        "frame_empty": (True, "32x24, all void, no segments", frame(empty(), "zstd", 10, 6)),
        "frame_tracked": (True, "the street scene with track columns (state, age, hits, first seen, centroid, "
                                "velocity)", frame(tracked_street(), "zstd", 11, 7)),
        "frame_predicted": (True, "the tracked street plus a hidden car in the predicted table (bbox, centroid, "
                                  "velocity, first seen, lost_s)", frame(predicted_street(), "zstd", 13, 8)),
        "meta": (True, "model card and class names", control(Kind.META, 0, {"metadata": METADATA})),
        "status_ready": (True, "heartbeat", control(Kind.STATUS, 12, status_body("ready", COUNTERS, ""))),
        "stats": (True, "latency percentiles", control(Kind.STATS, 5, {"stats": STATS})),
        "corrupt_truncated_zstd": (False, "zstd payload cut in half", [*good[:2], good[2][: len(good[2]) // 2]]),
        "corrupt_raw_short": (False, "raw payload 2 bytes short of nbytes", [*raw[:2], raw[2][:-2]]),
        "corrupt_schema_2": (False, "header schema 2 (unknown major version)", _with_header(good, schema=2)),
        "corrupt_header_garbage": (False, "header is not msgpack", [good[0], b"\xc1not msgpack", good[2]]),
    }


def expected(valid: bool, description: str, parts: list[bytes]) -> dict[str, Any]:
    record: dict[str, Any] = {"valid": valid, "description": description, "parts": len(parts)}
    if not valid:
        return record
    header = msgpack.unpackb(parts[1])
    record.update(topic=parts[0].decode("ascii"), header=header)
    if len(parts) > 2:
        desc = header["payload"][0]
        data = parts[2] if desc["compression"] == "raw" else zstandard.ZstdDecompressor().decompress(parts[2])
        id_map = np.frombuffer(data, {"uint16": "<u2", "uint32": "<u4"}[desc["dtype"]])
        record.update(id_map_sha256=hashlib.sha256(data).hexdigest(), id_map_values=np.unique(id_map).tolist())
    return record


def write(root: Path = HERE) -> None:
    manifest: dict[str, Any] = {"schema": 1, "zstd_version": zstandard.ZSTD_VERSION, "messages": []}
    for name, (valid, description, parts) in build_messages().items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("part*.bin"):
            old.unlink()
        for i, part in enumerate(parts):
            (folder / f"part{i}.bin").write_bytes(part)
        text = json.dumps(expected(valid, description, parts), indent=1) + "\n"
        (folder / "expected.json").write_text(text, encoding="utf-8")
        manifest["messages"].append({"name": name, "valid": valid, "parts": len(parts), "description": description})
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write()
