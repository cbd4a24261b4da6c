"""Sources decoded by OpenCV: V4L2 cameras, GStreamer pipelines, RTSP/HTTP streams, video files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from perception.capture.errors import SourceError, SourceLost
from perception.capture.source import SourceUri

# FFmpeg backend timeouts (ms) so a dead network stream fails instead of blocking for minutes
_STREAM_TIMEOUT_MS = 5000


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class _CaptureSource:
    live = True
    OPTIONS: tuple[str, ...] = ()  # the ?key=value options this source reads

    def __init__(self, uri: SourceUri) -> None:
        uri.check_options(self.OPTIONS)
        self.uri = uri
        self._cap: cv2.VideoCapture | None = None

    def _open_capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def open(self) -> None:
        self.close()
        self._cap = self._open_capture()

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._cap is None:
            raise SourceLost(f"{self.uri.raw} is not open")
        ok, image = self._cap.read()
        stamp = time.time_ns()
        if not ok or image is None:
            raise SourceLost(f"{self.uri.raw} delivered no frame")
        return _to_bgr(image), stamp

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class CameraSource(_CaptureSource):
    """`camera:0`, `0`, `/dev/video2`; options width, height, fps, fourcc (e.g. MJPG)."""

    OPTIONS = ("width", "height", "fps", "fourcc")

    def _open_capture(self) -> cv2.VideoCapture:
        target = self.uri.target
        device = f"/dev/video{target}" if target.isdigit() else target
        if not target.isdigit() and not device.startswith("/dev/video"):
            raise SourceError(f"camera {target!r} is not a camera index or /dev/videoN path",
                              "use e.g. camera:0 or /dev/video0")
        fourcc = self.uri.option("fourcc", "")
        if fourcc and len(fourcc) != 4:
            raise SourceError(f"fourcc={fourcc!r} in {self.uri.raw!r} is not 4 characters", "e.g. fourcc=MJPG or YUYV")
        # every option is parsed before the device is opened, so a bad one leaks no handle
        settings = [(prop, self.uri.float_option(key, 0.0)) for key, prop in (
            ("width", cv2.CAP_PROP_FRAME_WIDTH), ("height", cv2.CAP_PROP_FRAME_HEIGHT), ("fps", cv2.CAP_PROP_FPS))
            if key in self.uri.options]
        if not os.path.exists(device):
            raise SourceError(f"camera {device} is not there",
                              "check `ls /dev/video*`, the cable, and that your user is in the 'video' group")
        cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
        if fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*fourcc))
        for prop, value in settings:
            cap.set(prop, value)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # do not let the driver queue stale frames
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {device} exists but cannot be opened",
                              "another process may hold it (`fuser " + device + "`), or it is not a capture device")
        return cap


class GStreamerSource(_CaptureSource):
    """`gst:videotestsrc ! videoconvert ! appsink` (the pipeline must end in appsink)."""

    def _open_capture(self) -> cv2.VideoCapture:
        if not _gstreamer_enabled():
            raise SourceError("this OpenCV build has no GStreamer support",
                              "install a GStreamer-enabled OpenCV (e.g. Debian/JetPack python3-opencv) "
                              "or use a file:/rtsp:/camera: source")
        pipeline = self.uri.target
        if "appsink" not in pipeline:
            raise SourceError(f"GStreamer pipeline {pipeline!r} does not end in appsink", "append '! appsink'")
        cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"GStreamer pipeline {pipeline!r} does not start",
                              "test it with gst-launch-1.0 (replacing appsink by fakesink)")
        return cap


def _gstreamer_enabled() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


class StreamSource(_CaptureSource):
    """`rtsp://host/path`, `http://host/stream.mjpg` through FFmpeg, with open/read timeouts."""

    def _open_capture(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, _STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                  _STREAM_TIMEOUT_MS]
        cap = cv2.VideoCapture(self.uri.target, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"stream {self.uri.target} cannot be opened",
                              "check the URL, credentials and that the host is reachable")
        return cap


class VideoFileSource(_CaptureSource):
    """`file:drive.mp4` or a plain path; stamps are the file's presentation times from 0."""

    live = False

    def __init__(self, uri: SourceUri) -> None:
        super().__init__(uri)
        self._fps = 0.0
        self._index = 0

    def _open_capture(self) -> cv2.VideoCapture:
        path = Path(self.uri.target).expanduser()
        if not path.is_file():
            raise SourceError(f"video file {path} does not exist", "check the path (or use images:/camera: URIs)")
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"video file {path} cannot be decoded",
                              "OpenCV's FFmpeg cannot read it; convert it with ffmpeg to H.264 MP4")
        self._fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        self._index = 0
        return cap

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._cap is None:
            raise SourceLost(f"{self.uri.raw} is not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        if self._fps > 0 and (pos_ms <= 0 and self._index > 0):
            pos_ms = self._index * 1000.0 / self._fps
        self._index += 1
        return _to_bgr(image), round(pos_ms * 1e6)
