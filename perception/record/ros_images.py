"""sensor_msgs Image / CompressedImage: ROS 2 CDR and ROS 1 serialization, and pixels to BGR.

Drives are written with ROS 2 image messages in CDR because that one shape opens natively in
Foxglove, in ROS 2 tools and in rosbag2, and the same decoder then reads our recordings and
the ones a robot's ROS stack wrote. The two message layouts are fixed, so a few struct calls
encode and decode them with the pixel bytes as a zero-copy view (no ROS install, no dynamic
type system needed).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from perception.record.errors import CorruptRecordingError, RecordingWriteError, UnknownEncodingError

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
ROS1_IMAGE = "sensor_msgs/Image"
ROS1_COMPRESSED_IMAGE = "sensor_msgs/CompressedImage"
IMAGE_TYPES = frozenset({IMAGE, COMPRESSED_IMAGE, ROS1_IMAGE, ROS1_COMPRESSED_IMAGE})

# ros2msg schema texts (the .msg definitions with their dependencies), as rosbag2 writes them
_HEADER_DEFS = (
    "================================================================================\n"
    "MSG: std_msgs/Header\n"
    "builtin_interfaces/Time stamp\n"
    "string frame_id\n"
    "================================================================================\n"
    "MSG: builtin_interfaces/Time\n"
    "int32 sec\n"
    "uint32 nanosec\n"
)
IMAGE_SCHEMA = (
    "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
    "uint8 is_bigendian\nuint32 step\nuint8[] data\n" + _HEADER_DEFS
)
COMPRESSED_IMAGE_SCHEMA = "std_msgs/Header header\nstring format\nuint8[] data\n" + _HEADER_DEFS

_CDR_LE = b"\x00\x01\x00\x00"
_CDR_BE = b"\x00\x00\x00\x00"


@dataclass(frozen=True)
class ImageMessage:
    """The fields of either image type that replay needs; data is a view into the message bytes."""

    stamp_ns: int
    frame_id: str
    data: memoryview | bytes
    format: str = ""  # CompressedImage: "jpeg", "png", "bgr8; jpeg compressed bgr8", ...
    encoding: str = ""  # Image: "rgb8", "bgr8", "mono8", ...
    height: int = 0
    width: int = 0
    step: int = 0
    is_bigendian: bool = False

    @property
    def compressed(self) -> bool:
        return not self.encoding


class _CdrWriter:
    """Little-endian CDR with alignment counted from the end of the 4-byte encapsulation header."""

    def __init__(self) -> None:
        self.parts: list[bytes] = [_CDR_LE]
        self.size = 0

    def _align(self, n: int) -> None:
        pad = -self.size % n
        if pad:
            self.parts.append(b"\x00" * pad)
            self.size += pad

    def u32(self, value: int) -> None:
        self._align(4)
        self.parts.append(struct.pack("<I", value))
        self.size += 4

    def i32(self, value: int) -> None:
        self._align(4)
        self.parts.append(struct.pack("<i", value))
        self.size += 4

    def u8(self, value: int) -> None:
        self.parts.append(bytes((value,)))
        self.size += 1

    def string(self, text: str) -> None:
        raw = text.encode() + b"\x00"
        self.u32(len(raw))
        self.parts.append(raw)
        self.size += len(raw)

    def blob(self, data: bytes | memoryview) -> None:
        self.u32(len(data))
        self.parts.append(data if isinstance(data, bytes) else bytes(data))
        self.size += len(data)

    def header(self, stamp_ns: int, frame_id: str) -> None:
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        if not -(2**31) <= sec < 2**31:
            raise RecordingWriteError(f"stamp {stamp_ns} ns does not fit a ROS 2 header (int32 seconds)",
                                      "give stamps in ns since the Unix epoch (or since the drive's start)")
        self.i32(sec)
        self.u32(nanosec)
        self.string(frame_id)

    def end(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    """Reads CDR (aligned, either byte order) or ROS 1 (packed, little-endian) fields."""

    def __init__(self, data: bytes | memoryview, *, cdr: bool, what: str) -> None:
        self.view = memoryview(data)
        self.what = what
        self.cdr = cdr
        self.order = "<"
        self.base = 0
        if cdr:
            if len(self.view) < 4 or bytes(self.view[:4]) not in (_CDR_LE, _CDR_BE):
                raise CorruptRecordingError(f"{what} is not a CDR message (bad encapsulation header)",
                                            "the channel says 'cdr' but the bytes are not; re-record it")
            self.order = "<" if self.view[1] == 1 else ">"
            self.base = 4
        self.pos = self.base

    def _take(self, size: int, align: int) -> memoryview:
        if self.cdr and align > 1:
            self.pos += -(self.pos - self.base) % align
        end = self.pos + size
        if size < 0 or end > len(self.view):
            raise CorruptRecordingError(f"{self.what} is cut short ({len(self.view)} bytes)",
                                        "the message is damaged; re-record or drop this topic")
        chunk = self.view[self.pos:end]
        self.pos = end
        return chunk

    def u32(self) -> int:
        return int(struct.unpack(self.order + "I", self._take(4, 4))[0])

    def i32(self) -> int:
        return int(struct.unpack(self.order + "i", self._take(4, 4))[0])

    def u8(self) -> int:
        return int(self._take(1, 1)[0])

    def string(self) -> str:
        raw = bytes(self._take(self.u32(), 1))
        if self.cdr and raw.endswith(b"\x00"):
            raw = raw[:-1]
        return raw.decode(errors="replace")

    def blob(self) -> memoryview:
        return self._take(self.u32(), 1)

    def stamp_ns(self) -> int:
        if not self.cdr:
            self.u32()  # ROS 1 Header.seq
        sec = self.i32() if self.cdr else self.u32()
        return sec * 1_000_000_000 + self.u32()


def encode_image(stamp_ns: int, frame_id: str, bgr: np.ndarray) -> bytes:
    """sensor_msgs/msg/Image, bgr8 (mono8 for 2-D arrays), CDR."""
    image = np.ascontiguousarray(bgr)
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    writer = _CdrWriter()
    writer.header(stamp_ns, frame_id)
    writer.u32(height)
    writer.u32(width)
    writer.string("mono8" if channels == 1 else "bgr8")
    writer.u8(0)
    writer.u32(width * channels)
    writer.blob(image.tobytes())
    return writer.end()


def encode_compressed_image(stamp_ns: int, frame_id: str, fmt: str, data: bytes) -> bytes:
    """sensor_msgs/msg/CompressedImage, CDR; fmt is "jpeg" or "png"."""
    writer = _CdrWriter()
    writer.header(stamp_ns, frame_id)
    writer.string(fmt)
    writer.blob(data)
    return writer.end()


def decode_image_message(data: bytes | memoryview, schema_name: str, message_encoding: str,
                         what: str) -> ImageMessage:
    """Parse an Image or CompressedImage message in CDR ("cdr") or ROS 1 ("ros1") encoding."""
    if message_encoding not in ("cdr", "ros1"):
        raise UnknownEncodingError(f"{what} uses message encoding {message_encoding!r}",
                                   "image topics must be ROS 2 (cdr) or ROS 1 (ros1) sensor_msgs")
    reader = _Reader(data, cdr=message_encoding == "cdr", what=what)
    stamp_ns = reader.stamp_ns()
    frame_id = reader.string()
    if schema_name in (COMPRESSED_IMAGE, ROS1_COMPRESSED_IMAGE):
        fmt = reader.string()
        return ImageMessage(stamp_ns, frame_id, reader.blob(), format=fmt)
    if schema_name in (IMAGE, ROS1_IMAGE):
        height, width = reader.u32(), reader.u32()
        encoding = reader.string()
        is_bigendian = bool(reader.u8())
        step = reader.u32()
        return ImageMessage(stamp_ns, frame_id, reader.blob(), encoding=encoding, height=height,
                            width=width, step=step, is_bigendian=is_bigendian)
    raise UnknownEncodingError(f"{what} has message type {schema_name!r}",
                               f"choose a topic of type {' or '.join(sorted(IMAGE_TYPES))}")


# encoding -> (channels, cv2 conversion to BGR or None when already BGR)
_RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
    "8uc1": (1, cv2.COLOR_GRAY2BGR),
    "8uc3": (3, None),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
    "bayer_rggb8": (1, cv2.COLOR_BayerRGGB2BGR),
    "bayer_bggr8": (1, cv2.COLOR_BayerBGGR2BGR),
    "bayer_gbrg8": (1, cv2.COLOR_BayerGBRG2BGR),
    "bayer_grbg8": (1, cv2.COLOR_BayerGRBG2BGR),
}
RAW_ENCODINGS = tuple(sorted(_RAW_ENCODINGS))


def raw_to_bgr(encoding: str, height: int, width: int, step: int, data: bytes | memoryview | np.ndarray,
               what: str) -> np.ndarray:
    """Pixels of a sensor_msgs Image as an HxWx3 uint8 BGR array (copied, owned by the caller)."""
    name = encoding.lower()
    if name in ("mono16", "16uc1"):
        # depth-like 16-bit mono: keep the top byte so the network sees the picture's structure
        flat = np.frombuffer(data, np.uint8)
        if height * step > flat.size or step < width * 2:
            raise CorruptRecordingError(f"{what}: {width}x{height} mono16 image needs step >= {width * 2} "
                                        f"and {height * step} bytes, got step {step} and {flat.size}",
                                        "the message is damaged")
        rows = flat[: height * step].reshape(height, step)[:, : width * 2]
        mono = rows.view("<u2").reshape(height, width)
        return cv2.cvtColor((mono >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if name not in _RAW_ENCODINGS:
        raise UnknownEncodingError(f"{what} has image encoding {encoding!r}",
                                   f"replay reads {', '.join(RAW_ENCODINGS)}, mono16 and JPEG/PNG compressed")
    channels, conversion = _RAW_ENCODINGS[name]
    flat = np.frombuffer(data, np.uint8)
    row = width * channels
    if height == 0 or width == 0 or step < row or flat.size < height * step:
        raise CorruptRecordingError(f"{what}: {width}x{height} {encoding} image needs step >= {row} and "
                                    f"{height * step} bytes, got step {step} and {flat.size}",
                                    "the message is damaged")
    pixels = flat[: height * step].reshape(height, step)[:, :row].reshape(height, width, channels)
    if conversion is None:
        return np.array(pixels, copy=True)
    return cv2.cvtColor(np.ascontiguousarray(pixels if channels > 1 else pixels[:, :, 0]), conversion)


def compressed_to_bgr(fmt: str, data: bytes | memoryview | np.ndarray, what: str) -> np.ndarray:
    """JPEG/PNG (any format cv2 decodes) to BGR; fmt is the CompressedImage.format string."""
    lowered = fmt.lower()
    if any(word in lowered for word in ("compresseddepth", "h264", "hevc", "h265", "av1", "qoi")):
        raise UnknownEncodingError(f"{what} has compressed format {fmt!r}",
                                   "replay reads JPEG and PNG CompressedImage topics")
    buffer = np.frombuffer(data, np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise CorruptRecordingError(f"{what}: {buffer.size} bytes of format {fmt!r} do not decode as an image",
                                    "the image is damaged or not JPEG/PNG")
    return image


def message_to_bgr(message: ImageMessage, what: str) -> np.ndarray:
    if message.compressed:
        return compressed_to_bgr(message.format, message.data, what)
    if message.is_bigendian and message.encoding.lower() in ("mono16", "16uc1"):
        raise UnknownEncodingError(f"{what} is big-endian {message.encoding}", "record little-endian images")
    return raw_to_bgr(message.encoding, message.height, message.width, message.step, message.data, what)
