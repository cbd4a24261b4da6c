"""What the page shows, kept by the subscriber thread and read by every browser's event stream.

Each update bumps a version under a condition variable; an event stream waits for a version
newer than the one it sent, so a slow browser skips to the newest frame instead of queueing.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from typing import Any

from perception.core.frame import monotonic_ns
from perception.viewer.overlay import labels, overlay_png
from perception.wire.messages import FrameMessage, ImageMessage, StatsMessage, StatusMessage

IMAGES_KEPT = 8  # pictures waiting for their frame's masks
SILENCE_S = 3.0  # the node heartbeats at ~1 Hz: this long without a message means it is not there


class ViewState:
    def __init__(self, camera: str, endpoint: str) -> None:
        self.camera, self.endpoint = camera, endpoint
        self._cond = threading.Condition()
        self.version = 0
        self.closed = False
        self._events: dict[str, dict[str, Any]] = {}  # event name -> latest payload
        self._event_versions: dict[str, int] = {}
        self._images: OrderedDict[int, str] = OrderedDict()
        self._last_message_ns = 0
        self._node_state = ""
        self._put("status", self._status_payload())

    # -- from the subscriber thread ------------------------------------------------------------

    def on_message(self, msg: object) -> None:
        self._last_message_ns = monotonic_ns()
        if isinstance(msg, ImageMessage):
            self._images[msg.frame_index] = _data_url(f"image/{msg.format}", msg.data)
            while len(self._images) > IMAGES_KEPT:
                self._images.popitem(last=False)
        elif isinstance(msg, FrameMessage):
            self._put("frame", self._frame_payload(msg))
        elif isinstance(msg, StatusMessage):
            self._node_state = msg.state
            self._put("status", self._status_payload(msg.detail))
        elif isinstance(msg, StatsMessage):
            self._put("stats", dict(msg.stats))

    def on_idle(self) -> None:
        """No message for a while: after SILENCE_S the page goes back to 'waiting for ...'."""
        if self._node_state and monotonic_ns() - self._last_message_ns > SILENCE_S * 1e9:
            self._node_state = ""
            self._put("status", self._status_payload())

    def _frame_payload(self, msg: FrameMessage) -> dict[str, Any]:
        image = self._images.get(msg.frame_index) or (next(reversed(self._images.values())) if self._images else None)
        capture = msg.stamps.get("capture")
        return {
            "frame_index": msg.frame_index, "width": msg.width, "height": msg.height,
            "overlay": _data_url("image/png", overlay_png(msg)),
            "image": image, "image_matches": msg.frame_index in self._images,
            "labels": labels(msg), "missed": msg.missed,
            "capture_to_view_ms": None if capture is None else (msg.receive_ns - capture) / 1e6,
        }

    def _status_payload(self, detail: str = "") -> dict[str, Any]:
        waiting = f"waiting for perception/{self.camera}/ on {self.endpoint}"
        if not self._node_state:
            return {"connected": False, "text": waiting}
        text = self._node_state + (f" ({detail})" if detail else "")
        if self._node_state == "stopped":
            text += f"; {waiting}"
        return {"connected": self._node_state != "stopped", "state": self._node_state, "text": text}

    def _put(self, event: str, payload: dict[str, Any]) -> None:
        with self._cond:
            self.version += 1
            self._events[event] = payload
            self._event_versions[event] = self.version
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # -- from an event stream ------------------------------------------------------------------

    def wait_newer(self, seen: int, timeout: float) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
        """Events changed since version `seen` (oldest first), waiting up to `timeout`; [] on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self.version > seen or self.closed, timeout)
            changed = sorted((v, name) for name, v in self._event_versions.items() if v > seen)
            return self.version, [(name, self._events[name]) for _, name in changed]


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
