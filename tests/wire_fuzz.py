"""The wire fuzz harness shared by the suite (hypothesis, a few thousand inputs) and the long run
(bench/fuzz_wire.py, atheris, >= 1,000,000 inputs): seed messages, mutations, and one call that
reads a message the way a subscriber does and says whether it was decoded or refused.

Anything but DecodeError escaping `exercise` is a finding.
"""

from __future__ import annotations

import itertools
from typing import Any

import lz4.frame
import msgpack
import zstandard

from perception.wire.codec import FrameEncoder, control_message, decode_message
from perception.wire.errors import DecodeError
from perception.wire.messages import FrameMessage, MetadataMessage
from perception.wire.payload import IdMapDecoder
from perception.wire.schema import Kind
from tests.wire_support import METADATA, result, scene, wide_scene

EPOCH = 0x0123456789ABCDEF
DECODED, REFUSED = "decoded", "refused"


def _frame(compression: str, seg: Any = None) -> list[bytes]:
    ticks = itertools.count(1_000, 10)
    parts, _, _ = FrameEncoder("cam0", compression).encode(
        result(3, seg), epoch=EPOCH, seq=7, clock=lambda: next(ticks))
    return [bytes(p) for p in parts]


def _control(kind: Kind, body: dict[str, Any]) -> list[bytes]:
    return [bytes(p) for p in control_message(kind, "cam0", epoch=EPOCH, seq=1, publish_ns=5, body=body)]


def _with_payload(parts: list[bytes], shape: list[int], dtype: str, compression: str, payload: bytes) -> list[bytes]:
    header = msgpack.unpackb(parts[1])
    nbytes = shape[0] * shape[1] * (2 if dtype == "uint16" else 4)
    header.update(width=shape[1], height=shape[0])
    header["payload"] = [{"name": "id_map", "dtype": dtype, "shape": shape, "compression": compression,
                          "nbytes": nbytes}]
    return [parts[0], msgpack.packb(header), payload]


def hostile_seeds() -> dict[str, list[bytes]]:
    """The inputs the fault battery found, as messages: each must be refused quickly and cheaply."""
    base = _frame("zstd")
    meta = msgpack.unpackb(_control(Kind.META, {"metadata": METADATA})[1])
    meta["metadata"]["class_names"] = {"9" * 5000: "car"}
    # a few KiB of zstd that inflate to 64 MiB
    bomb = zstandard.ZstdCompressor(level=1).compress(bytes(64 * 1024 * 1024))
    return {
        "meta with a 5000-digit class id": [b"perception/cam0/meta/", msgpack.packb(meta)],
        "zstd map over the size cap": _with_payload(base, [16384, 16384], "uint32", "zstd", bomb),
        "zstd frame bigger than its header says": _with_payload(base, [48, 64], "uint16", "zstd", bomb),
        "lz4 frame bigger than its header says": _with_payload(
            _frame("lz4"), [48, 64], "uint16", "lz4", lz4.frame.compress(bytes(64 * 1024 * 1024))),
        "zstd frame without content size": _with_payload(
            base, [48, 64], "uint16", "zstd",
            zstandard.ZstdCompressor(write_content_size=False).compress(bytes(48 * 64 * 2))),
        "deeply nested header": [base[0], b"\x91" * 5000 + b"\xc0", base[2]],
        "huge declared array": [base[0], b"\xdd\xff\xff\xff\xff", base[2]],
    }


def seeds() -> list[list[bytes]]:
    """Valid messages of every kind, dtype and compression: the starting points of mutation."""
    return [
        _frame("zstd"), _frame("lz4"), _frame("raw"), _frame("zstd", wide_scene()), _frame("raw", scene(8, 6)),
        _control(Kind.META, {"metadata": {**METADATA, "class_names": {"0": "road", "1": "person"}}}),
        _control(Kind.META, {"metadata": {"class_names": {"0": "road", "1": "person", "2": "car"}}}),
        _control(Kind.META, {"metadata": METADATA}),
        _control(Kind.STATUS, {"state": "ready", "counters": {"read": 3, "dropped": {"stale": 1}}, "detail": "",
                               "frames": 3}),
        _control(Kind.STATS, {"stats": {"fps": 30.0, "stages": {"inference": {"p50_ns": 5}}}}),
    ]


def exercise(parts: list[bytes]) -> str:
    """Read a message as Subscriber does (header, class names, id map, objects); DECODED or REFUSED."""
    try:
        msg = decode_message(parts, receive_ns=10**12, class_names={0: "road"}, decoder=IdMapDecoder())
        if isinstance(msg, MetadataMessage):
            _ = msg.class_names
        if isinstance(msg, FrameMessage):
            _ = msg.id_map
            _ = msg.objects
            msg.summary()
    except DecodeError:
        return REFUSED
    return DECODED


# Parts of a message in one fuzzer input, split by a marker no seed contains: a mutation that
# inserts or deletes bytes then changes one part instead of breaking a length-prefixed framing.
PART_MARK = b"\xffPART\xff"


def to_bytes(parts: list[bytes]) -> bytes:
    """A multipart message as one fuzzer input."""
    return PART_MARK.join(parts)


def from_bytes(data: bytes) -> list[bytes]:
    """The inverse of to_bytes: any byte string is some multipart message."""
    return data.split(PART_MARK)
