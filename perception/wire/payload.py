"""Bulk payload frames: the panoptic id map, compressed with zstd, lz4 or sent raw.

A payload frame is described in the header by a PayloadSpec (name, dtype, shape,
compression, nbytes), so a reader in any language knows how to rebuild the array.
Arrays on the wire are little-endian and row-major (C order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from perception.core.errors import require
from perception.core.registry import Registry
from perception.wire.errors import DecodeError, WireError
from perception.wire.limits import MAX_ID_MAP_PIXELS
from perception.wire.schema import ID_MAP_DTYPES

ID_MAP = "id_map"

# Level 1 keeps encode well under a millisecond for VGA id maps; id maps are large flat
# regions, so higher levels buy little (see docs/benchmarks.md "Wire").
ZSTD_LEVEL = 1

Buffer = bytes | memoryview


@dataclass(frozen=True)
class PayloadSpec:
    """How to rebuild one payload frame: decompress, then view as little-endian dtype with shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    compression: str
    nbytes: int  # size after decompression

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "compression": self.compression,
            "nbytes": self.nbytes,
        }

    @classmethod
    def from_wire(cls, raw: object) -> PayloadSpec:
        """Validate a header's payload description; every inconsistency is a DecodeError."""
        if not isinstance(raw, Mapping):
            raise DecodeError("payload description is not a map", "check the publisher's schema version")
        name, dtype, shape = raw.get("name"), raw.get("dtype"), raw.get("shape")
        compression, nbytes = raw.get("compression"), raw.get("nbytes")
        if not isinstance(name, str):
            raise DecodeError("payload description lacks a string 'name'", "check the publisher")
        if dtype not in ID_MAP_DTYPES:
            raise DecodeError(f"payload {name!r} has dtype {dtype!r}", f"supported: {', '.join(ID_MAP_DTYPES)}")
        if not isinstance(compression, str) or compression not in CODECS:
            raise DecodeError(
                f"payload {name!r} has compression {compression!r}", f"supported: {', '.join(CODECS.names())}"
            )
        if (
            not isinstance(shape, list)
            or len(shape) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise DecodeError(f"payload {name!r} has shape {shape!r}", "expected [height, width] integers")
        if shape[0] * shape[1] > MAX_ID_MAP_PIXELS:
            raise DecodeError(
                f"payload {name!r} shape {shape} has more than {MAX_ID_MAP_PIXELS} pixels (8192 x 8192)",
                "the header is corrupt or hostile; the protocol caps id maps there",
            )
        expected = shape[0] * shape[1] * np.dtype(dtype).itemsize
        if nbytes != expected:
            raise DecodeError(
                f"payload {name!r} declares nbytes={nbytes!r} but {dtype}{shape} needs {expected}",
                "the header is corrupt",
            )
        return cls(name=name, dtype=dtype, shape=(shape[0], shape[1]), compression=compression, nbytes=expected)


@runtime_checkable
class Codec(Protocol):
    def compress(self, data: Buffer) -> Buffer: ...
    def decompress(self, data: Buffer, nbytes: int) -> Buffer: ...


class RawCodec:
    def compress(self, data: Buffer) -> Buffer:
        return data

    def decompress(self, data: Buffer, nbytes: int) -> Buffer:
        if len(data) != nbytes:
            raise DecodeError(f"raw payload has {len(data)} bytes, header says {nbytes}", "message truncated")
        return data


class ZstdCodec:
    def __init__(self) -> None:
        import zstandard

        self._zstd = zstandard
        # write_content_size lets readers size their buffer from the frame header alone.
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
        self._decompressor = zstandard.ZstdDecompressor()

    def compress(self, data: Buffer) -> Buffer:
        return self._compressor.compress(data)

    def decompress(self, data: Buffer, nbytes: int) -> Buffer:
        # The header's nbytes (already capped by PayloadSpec) bounds the allocation: a frame must
        # declare exactly that size, and the decompressor is never allowed to produce more.
        try:
            declared = self._zstd.frame_content_size(data)
        except self._zstd.ZstdError as exc:
            raise DecodeError(f"zstd payload has no valid frame header ({exc})", "message truncated or corrupt") \
                from exc
        if declared != nbytes:
            raise DecodeError(
                f"zstd frame declares {'no' if declared == -1 else declared} content size, header says {nbytes}",
                "corrupt message (the protocol requires the content size in the frame header)",
            )
        try:
            out = self._decompressor.decompress(data, max_output_size=nbytes)
        except self._zstd.ZstdError as exc:
            raise DecodeError(f"zstd payload cannot be decompressed ({exc})", "message truncated or corrupt") from exc
        if len(out) != nbytes:
            raise DecodeError(f"zstd payload gave {len(out)} bytes, header says {nbytes}", "corrupt message")
        return out


class Lz4Codec:
    def __init__(self) -> None:
        self._lz4: Any = require("lz4.frame", "lz4 compression on the wire", "pip install 'perception-node[lz4]'")

    def compress(self, data: Buffer) -> Buffer:
        return bytes(self._lz4.compress(data, compression_level=0, store_size=True))

    def decompress(self, data: Buffer, nbytes: int) -> Buffer:
        # lz4.frame.decompress() would inflate everything before we could look: check the frame's
        # declared size, then let a streaming decompressor produce at most nbytes (+1 to see excess).
        try:
            declared = self._lz4.get_frame_info(data).get("content_size", 0)
        except (RuntimeError, ValueError) as exc:
            raise DecodeError(f"lz4 payload has no valid frame header ({exc})", "message truncated or corrupt") from exc
        if declared != nbytes:
            raise DecodeError(
                f"lz4 frame declares {declared or 'no'} content size, header says {nbytes}",
                "corrupt message (the protocol requires the content size in the frame header)",
            )
        decompressor = self._lz4.LZ4FrameDecompressor()
        try:
            out = decompressor.decompress(data, max_length=nbytes + 1)
        except (RuntimeError, ValueError) as exc:
            raise DecodeError(f"lz4 payload cannot be decompressed ({exc})", "message truncated or corrupt") from exc
        if len(out) != nbytes or not decompressor.eof:
            raise DecodeError(f"lz4 payload gave {len(out)}+ bytes, header says {nbytes}", "corrupt message")
        return bytes(out)


# Compression names of payload frames; lz4 needs the optional 'lz4' package. A plugin codec
# (entry point group perception.codecs) must be installed on the publisher and every subscriber.
CODECS: Registry[Codec] = Registry("compression", Codec, WireError,
                                   {"zstd": ZstdCodec, "lz4": Lz4Codec, "raw": RawCodec}, group="perception.codecs")


def check_compression(name: str) -> str:
    if name not in CODECS:
        raise CODECS.unknown(name)
    return name


class IdMapEncoder:
    """Turns an id map into (spec, frame); keeps its compressor so each frame reuses it."""

    def __init__(self, compression: str = "zstd") -> None:
        self.compression = check_compression(compression)
        self._codec = CODECS.create(compression)

    def encode(self, id_map: np.ndarray) -> tuple[PayloadSpec, Buffer]:
        if id_map.ndim != 2 or id_map.dtype.name not in ID_MAP_DTYPES:
            raise WireError(
                f"id map must be 2-D uint16/uint32, got {id_map.shape} {id_map.dtype}", "fix the decoder's output"
            )
        little = np.ascontiguousarray(id_map, dtype=id_map.dtype.newbyteorder("<"))
        spec = PayloadSpec(ID_MAP, id_map.dtype.name, little.shape, self.compression, little.nbytes)
        # memoryview, not tobytes(): raw frames then go to ZeroMQ without a copy.
        return spec, self._codec.compress(little.data.cast("B"))


class IdMapDecoder:
    """Rebuilds id maps; one per subscriber so the decompressors are reused."""

    def __init__(self) -> None:
        self._codecs: dict[str, Codec] = {}

    def decode(self, spec: PayloadSpec, data: Buffer) -> np.ndarray:
        codec = self._codecs.get(spec.compression)
        if codec is None:
            codec = self._codecs[spec.compression] = CODECS.create(spec.compression)
        raw = codec.decompress(data, spec.nbytes)
        array = np.frombuffer(raw, dtype=np.dtype(spec.dtype).newbyteorder("<")).reshape(spec.shape)
        # Native byte order so numpy users never meet a '>u2' surprise on big-endian hosts.
        return array.astype(array.dtype.newbyteorder("="), copy=False)
