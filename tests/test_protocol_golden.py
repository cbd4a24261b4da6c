"""Golden files pin the wire format: the encoder still writes them byte for byte, and both the
package's decoder and the doc-only reader (tests/protocol_reader.py) read them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard

from perception.wire.codec import decode_message
from perception.wire.errors import DecodeError
from perception.wire.messages import FrameMessage, MetadataMessage, StatsMessage, StatusMessage
from tests import protocol_reader
from tests.golden.make_golden import build_messages

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text(encoding="utf-8"))
NAMES = [m["name"] for m in MANIFEST["messages"]]
SAME_ZSTD = tuple(MANIFEST["zstd_version"]) == tuple(zstandard.ZSTD_VERSION)


def stored(name: str) -> list[bytes]:
    count = json.loads((GOLDEN / name / "expected.json").read_text(encoding="utf-8"))["parts"]
    return [(GOLDEN / name / f"part{i}.bin").read_bytes() for i in range(count)]


def expected(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / name / "expected.json").read_text(encoding="utf-8"))


def test_manifest_lists_every_message_the_generator_makes() -> None:
    assert list(build_messages()) == NAMES
    assert sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_encoder_reproduces_golden_bytes(name: str) -> None:
    valid, _, parts = build_messages()[name]
    golden = stored(name)
    assert len(parts) == len(golden)
    assert parts[:2] == golden[:2], "topic or header bytes changed: a format change must be deliberate"
    if parts[2:] != golden[2:]:
        # Only a different libzstd may change payload bytes; what they decompress to must not change.
        assert not SAME_ZSTD, "payload bytes changed: a format change must be deliberate"
        if valid:
            unzstd = zstandard.ZstdDecompressor().decompress
            assert unzstd(parts[2]) == unzstd(golden[2])


VALID = [m["name"] for m in MANIFEST["messages"] if m["valid"]]
INVALID = [m["name"] for m in MANIFEST["messages"] if not m["valid"]]


@pytest.mark.parametrize("name", VALID)
def test_package_decoder_reads_golden_messages(name: str) -> None:
    want = expected(name)
    msg = decode_message(stored(name), receive_ns=0)
    assert dict(msg.header) == want["header"]
    assert (msg.epoch, msg.seq, msg.camera) == (0x0123456789ABCDEF, want["header"]["seq"], "cam0")
    if isinstance(msg, FrameMessage):
        data = np.ascontiguousarray(msg.id_map, dtype=msg.id_map.dtype.newbyteorder("<")).tobytes()
        assert hashlib.sha256(data).hexdigest() == want["id_map_sha256"]
        assert np.unique(msg.id_map).tolist() == want["id_map_values"]
        for row in msg.objects:
            assert int(msg.mask(row.id).sum()) == row.area
    else:
        assert isinstance(msg, MetadataMessage | StatusMessage | StatsMessage)


def test_golden_predicted_track_reads_alike_in_both_readers() -> None:
    """The hidden car: in `predicted` only, with its box partly outside the picture."""
    want = expected("frame_predicted")["header"]["predicted"]
    msg = decode_message(stored("frame_predicted"), receive_ns=0)
    assert isinstance(msg, FrameMessage)
    (car,) = msg.predicted
    assert (car.instance_id, car.class_name, car.bbox, car.lost_s) == (9, "class2", (-4.5, 20.0, 7.5, 30.0), 0.25)
    assert 9 not in [o.instance_id for o in msg.objects] and not (msg.id_map == 9).any()
    doc = protocol_reader.decode(stored("frame_predicted"))
    assert doc.predicted == [{k: want[k][0] for k in protocol_reader.PREDICTED_COLUMNS}]
    assert protocol_reader.decode(stored("frame_tracked")).predicted == []  # no table: none predicted


def test_golden_frame_objects_and_names() -> None:
    meta = decode_message(stored("meta"), receive_ns=0)
    assert isinstance(meta, MetadataMessage)
    msg = decode_message(stored("frame_zstd_uint16"), receive_ns=0, class_names=meta.class_names)
    assert isinstance(msg, FrameMessage)
    assert msg.summary() == "car×2 road person"
    assert [(o.class_name, o.instance_id, o.bbox) for o in msg.objects] == [
        ("road", 0, (0, 32, 64, 48)),
        ("car", 11, (2, 12, 16, 24)),
        ("car", 12, (32, 16, 40, 32)),
        ("person", 13, (52, 6, 62, 16)),
    ]


@pytest.mark.parametrize("name", INVALID)
def test_corrupt_golden_messages_are_refused(name: str) -> None:
    with pytest.raises(DecodeError):  # noqa: PT012 - payload errors surface when the id map is decoded
        msg = decode_message(stored(name), receive_ns=0)
        assert isinstance(msg, FrameMessage)
        msg.id_map  # noqa: B018
    with pytest.raises(protocol_reader.ProtocolViolation):
        protocol_reader.decode(stored(name))


@pytest.mark.parametrize("name", VALID)
def test_doc_only_reader_agrees_with_golden_expectations(name: str) -> None:
    want = expected(name)
    names = protocol_reader.class_names(protocol_reader.decode(stored("meta")).header["metadata"])
    decoded = protocol_reader.decode(stored(name), names)
    assert decoded.header == want["header"]
    if decoded.id_map is not None:
        assert hashlib.sha256(decoded.id_map.tobytes()).hexdigest() == want["id_map_sha256"]
        for obj in decoded.objects:
            assert int(protocol_reader.mask(decoded, obj["id"]).sum()) == obj["area"]


def _doc_example_parts() -> list[bytes]:
    """The hex example of docs/protocol.md section 5.1.2, as bytes per part."""
    text = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    block = text.split("<!-- example-frame:begin -->", 1)[1].split("<!-- example-frame:end -->", 1)[0]
    parts: list[bytes] = []
    for line in block.splitlines():
        if line.startswith("part "):
            parts.append(b"")
        elif parts and line[:4].strip() and all(c in "0123456789abcdef" for c in line[:4]):
            offset, _, hex_bytes = line.partition("  ")
            assert int(offset, 16) == len(parts[-1]), f"offset {offset} out of step"
            parts[-1] += bytes.fromhex(hex_bytes)
    return parts


def test_the_hex_example_in_the_protocol_doc_is_what_the_encoder_writes() -> None:
    from tests.golden.make_golden import DOC_EPOCH, doc_example

    assert _doc_example_parts() == doc_example()
    message = decode_message(doc_example(), receive_ns=0)
    assert isinstance(message, FrameMessage)
    assert message.epoch == DOC_EPOCH > 2**63
    assert message.id_map.tolist() == [[2, 2, 0, 1], [1, 1, 1, 1]]
