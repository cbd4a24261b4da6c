"""The camera channel of our recordings: sensor_msgs/msg/CompressedImage (JPEG/PNG) or Image (bgr8) in CDR."""

from __future__ import annotations

import cv2
import numpy as np
from mcap.writer import CompressionType, Writer

from perception.record import ros_images
from perception.record.errors import RecordingWriteError

IMAGE_FORMATS = ("jpeg", "png", "raw")
COMPRESSED_TOPIC = "/camera/image/compressed"
RAW_TOPIC = "/camera/image"


def check_image_format(image_format: str) -> str:
    if image_format not in IMAGE_FORMATS:
        raise RecordingWriteError(f"unknown image format {image_format!r} for recording",
                                  f"use one of {', '.join(IMAGE_FORMATS)} (jpeg: small, png/raw: lossless)")
    return image_format


def chunk_compression(image_format: str) -> CompressionType:
    """JPEG/PNG bytes do not shrink further; raw pixels do, and zstd is cheap to undo."""
    return CompressionType.ZSTD if image_format == "raw" else CompressionType.NONE


def check_bgr(bgr: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(bgr, np.ndarray) or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        shape = getattr(bgr, "shape", None)
        dtype = getattr(bgr, "dtype", type(bgr).__name__)
        raise RecordingWriteError(f"{what} must be an HxWx3 uint8 BGR array, got {shape} {dtype}",
                                  "convert the image to 8-bit BGR before recording it")
    return bgr


class ImageChannel:
    """Registers the camera channel on a writer and encodes each BGR frame into it."""

    def __init__(self, writer: Writer, image_format: str = "jpeg", *, jpeg_quality: int = 90,
                 frame_id: str = "camera", topic: str | None = None) -> None:
        self.image_format = check_image_format(image_format)
        if not 1 <= jpeg_quality <= 100:
            raise RecordingWriteError(f"jpeg_quality={jpeg_quality} is out of range", "use 1..100 (90 is typical)")
        self.jpeg_quality = jpeg_quality
        self.frame_id = frame_id
        raw = image_format == "raw"
        self.topic = topic or (RAW_TOPIC if raw else COMPRESSED_TOPIC)
        name, text = ((ros_images.IMAGE, ros_images.IMAGE_SCHEMA) if raw
                      else (ros_images.COMPRESSED_IMAGE, ros_images.COMPRESSED_IMAGE_SCHEMA))
        schema_id = writer.register_schema(name=name, encoding="ros2msg", data=text.encode())
        self.channel_id = writer.register_channel(topic=self.topic, message_encoding="cdr", schema_id=schema_id,
                                                  metadata={"image_format": image_format})
        self._writer = writer
        self._sequence = 0

    def encode(self, stamp_ns: int, bgr: np.ndarray) -> bytes:
        if self.image_format == "raw":
            return ros_images.encode_image(stamp_ns, self.frame_id, bgr)
        if self.image_format == "jpeg":
            ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        else:
            ok, data = cv2.imencode(".png", bgr)
        if not ok:
            raise RecordingWriteError(f"OpenCV could not encode a {bgr.shape} image as {self.image_format}",
                                      "record with image_format='raw'")
        return ros_images.encode_compressed_image(stamp_ns, self.frame_id, self.image_format, data.tobytes())

    def write(self, stamp_ns: int, bgr: np.ndarray, log_time_ns: int) -> None:
        self._writer.add_message(self.channel_id, log_time=log_time_ns, data=self.encode(stamp_ns, bgr),
                                 publish_time=log_time_ns, sequence=self._sequence)
        self._sequence += 1
