"""Foxglove image schemas (protobuf and JSON) replay through mcap:, encoded here by the protobuf runtime."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from mcap.writer import Writer

from perception.capture.source import open_source
from perception.record.errors import CorruptRecordingError

descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
descriptor_pool = pytest.importorskip("google.protobuf.descriptor_pool")
message_factory = pytest.importorskip("google.protobuf.message_factory")
timestamp_pb2 = pytest.importorskip("google.protobuf.timestamp_pb2")

F = descriptor_pb2.FieldDescriptorProto
STAMPS = [1_700_000_000_000_000_001, 1_700_000_000_050_000_002, 1_700_000_000_100_000_003]


def _image(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def _foxglove_protos() -> tuple[Any, Any, bytes]:
    """foxglove.CompressedImage and foxglove.RawImage classes (field numbers of Foxglove's .proto files)."""
    timestamp_file = descriptor_pb2.FileDescriptorProto()
    timestamp_pb2.DESCRIPTOR.CopyToProto(timestamp_file)
    images = descriptor_pb2.FileDescriptorProto(name="foxglove/Images.proto", package="foxglove", syntax="proto3",
                                                dependency=["google/protobuf/timestamp.proto"])
    compressed = images.message_type.add(name="CompressedImage")
    compressed.field.add(name="timestamp", number=1, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp")
    compressed.field.add(name="frame_id", number=4, type=F.TYPE_STRING)
    compressed.field.add(name="data", number=2, type=F.TYPE_BYTES)
    compressed.field.add(name="format", number=3, type=F.TYPE_STRING)
    raw = images.message_type.add(name="RawImage")
    raw.field.add(name="timestamp", number=1, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp")
    raw.field.add(name="frame_id", number=7, type=F.TYPE_STRING)
    raw.field.add(name="width", number=2, type=F.TYPE_FIXED32)
    raw.field.add(name="height", number=3, type=F.TYPE_FIXED32)
    raw.field.add(name="encoding", number=4, type=F.TYPE_STRING)
    raw.field.add(name="step", number=5, type=F.TYPE_FIXED32)
    raw.field.add(name="data", number=6, type=F.TYPE_BYTES)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(timestamp_file)
    pool.Add(images)
    descriptor_set = descriptor_pb2.FileDescriptorSet(file=[timestamp_file, images]).SerializeToString()
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("foxglove.CompressedImage")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("foxglove.RawImage")), descriptor_set)


def _write(path: Path, schema: str, encoding: str, messages: list[bytes]) -> Path:
    with path.open("wb") as stream:
        writer = Writer(stream)
        writer.start()
        if encoding == "protobuf":
            schema_id = writer.register_schema(schema, "protobuf", _foxglove_protos()[2])
        else:
            schema_id = writer.register_schema(schema, "jsonschema", b"{}")
        channel = writer.register_channel("/cam", encoding, schema_id)
        for stamp, data in zip(STAMPS, messages, strict=True):
            writer.add_message(channel, stamp + 3_000_000, data, stamp + 3_000_000)
        writer.finish()
    return path


def _protobuf_messages(kind: str) -> list[bytes]:
    compressed, raw, _ = _foxglove_protos()
    out = []
    for i, stamp in enumerate(STAMPS):
        time = {"seconds": stamp // 1_000_000_000, "nanos": stamp % 1_000_000_000}
        if kind == "compressed":
            png = cv2.imencode(".png", _image(i))[1].tobytes()
            msg = compressed(frame_id="cam", data=png, format="png")
        else:
            rgb = np.ascontiguousarray(_image(i)[:, :, ::-1])
            msg = raw(frame_id="cam", width=30, height=20, encoding="rgb8", step=90, data=rgb.tobytes())
        msg.timestamp.seconds, msg.timestamp.nanos = time["seconds"], time["nanos"]
        out.append(msg.SerializeToString())
    return out


def _json_messages(kind: str) -> list[bytes]:
    out = []
    for i, stamp in enumerate(STAMPS):
        body: dict[str, Any] = {"timestamp": {"sec": stamp // 1_000_000_000, "nsec": stamp % 1_000_000_000},
                                "frame_id": "cam"}
        if kind == "compressed":
            body.update(format="png", data=base64.b64encode(cv2.imencode(".png", _image(i))[1].tobytes()).decode())
        else:
            body.update(width=30, height=20, encoding="bgr8", step=90,
                        data=base64.b64encode(_image(i).tobytes()).decode())
        out.append(json.dumps(body).encode())
    return out


def _replay(path: Path) -> list[tuple[np.ndarray, int]]:
    source = open_source(f"mcap:{path}")
    source.open()
    frames = []
    while (item := source.read()) is not None:
        frames.append(item)
    source.close()
    return frames


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@pytest.mark.parametrize("kind", ["compressed", "raw"])
def test_foxglove_images_replay_losslessly_with_their_stamps(tmp_path: Path, encoding: str, kind: str) -> None:
    schema = "foxglove.CompressedImage" if kind == "compressed" else "foxglove.RawImage"
    messages = _protobuf_messages(kind) if encoding == "protobuf" else _json_messages(kind)
    frames = _replay(_write(tmp_path / "fox.mcap", schema, encoding, messages))
    assert [stamp for _, stamp in frames] == STAMPS
    for i, (bgr, _) in enumerate(frames):
        np.testing.assert_array_equal(bgr, _image(i))


def test_damaged_protobuf_image_is_a_typed_error(tmp_path: Path) -> None:
    messages = _protobuf_messages("raw")
    messages[1] = messages[1][:40]  # cut inside the pixel bytes
    with pytest.raises(CorruptRecordingError, match="cut short"):
        _replay(_write(tmp_path / "fox.mcap", "foxglove.RawImage", "protobuf", messages))
