"""`--foxglove HOST:PORT`: the live node in the Foxglove app, through foxglove-sdk's WebSocket server.

The same streams a recording holds, so the app shows a live node as it shows our MCAP files:
`/perception/<camera>/image` (foxglove.CompressedImage, JPEG), `/perception/<camera>/annotations`
(foxglove.ImageAnnotations as JSON, the recorder's own encoding, stamped like its image), and
`status` and `stats` as schemaless JSON. Each camera of a multi-camera node has its own four
channels under its own name, on the one server. foxglove-sdk is the optional `[foxglove]` extra.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from perception.core.errors import require
from perception.core.result import FrameResult
from perception.ops.errors import OpsError
from perception.ops.listen import ListenAddress
from perception.ops.preview import ImagePreview
from perception.record.image_annotations import SCHEMA, image_annotations

DEFAULT_IMAGE_RATE_HZ = 10.0
INSTALL = "pip install 'perception-node[foxglove]'"


class _CameraChannels:
    """One camera's channels, and its own image rate limit (one camera's pictures never use up another's)."""

    def __init__(self, foxglove: Any, context: Any, camera: str, image_rate_hz: float) -> None:
        from foxglove.channels import CompressedImageChannel

        base = f"/perception/{camera}"
        self.image = CompressedImageChannel(f"{base}/image", context=context)
        self.annotations = foxglove.Channel(f"{base}/annotations", schema=SCHEMA, context=context)
        self.status = foxglove.Channel(f"{base}/status", context=context)
        self.stats = foxglove.Channel(f"{base}/stats", context=context)
        self.preview = ImagePreview(image_rate_hz)


class FoxgloveLive:
    def __init__(self, address: ListenAddress, cameras: Sequence[str], *, allow_public: bool = False,
                 image_rate_hz: float = DEFAULT_IMAGE_RATE_HZ) -> None:
        if not address.is_loopback and not allow_public:
            raise OpsError(f"refusing to serve Foxglove on non-loopback address {address} (no authentication)",
                           "bind 127.0.0.1:PORT, or pass --allow-public on a trusted network")
        foxglove: Any = require("foxglove", "--foxglove", INSTALL)
        self._messages: Any = require("foxglove.messages", "--foxglove", INSTALL)
        self._context = foxglove.Context()  # our own: two nodes in one process never share channels
        try:
            self._server = foxglove.start_server(name=f"perception {', '.join(cameras)}", host=address.host,
                                                 port=address.port, context=self._context)
        except Exception as exc:  # the SDK raises its own error type for a failed bind
            in_use = "in use" in str(exc).lower()
            raise OpsError(f"Foxglove address {address} {'is in use' if in_use else f'cannot be used ({exc})'}",
                           "choose another port, or stop the process that holds it") from None
        self.address = ListenAddress(address.host, int(self._server.port))
        self._cameras = {c: _CameraChannels(foxglove, self._context, c, image_rate_hz) for c in cameras}

    def frame(self, image: np.ndarray, result: FrameResult, class_names: Sequence[str]) -> None:
        """Picture and annotations together (same stamp), at most image_rate_hz times a second per camera."""
        channels = self._cameras[result.camera]
        if not channels.preview.due():
            return
        stamp = self._messages.Timestamp(result.stamp_ns // 1_000_000_000, result.stamp_ns % 1_000_000_000)
        now = time.time_ns()
        channels.image.log(self._messages.CompressedImage(timestamp=stamp, frame_id=result.camera,
                                                          data=channels.preview.encode(image), format="jpeg"),
                           log_time=now)
        channels.annotations.log(image_annotations(result.stamp_ns, result.segmentation, class_names), log_time=now)

    def status(self, camera: str, state: str, detail: str) -> None:
        self._cameras[camera].status.log({"state": state, "detail": detail}, log_time=time.time_ns())

    def stats(self, camera: str, stats: Mapping[str, Any]) -> None:
        self._cameras[camera].stats.log(dict(stats), log_time=time.time_ns())

    def close(self) -> None:
        self._server.stop()
