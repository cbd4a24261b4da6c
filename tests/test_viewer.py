"""`perception view` without a browser: the overlay it draws, its event stream, its bad input."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from pathlib import Path

import numpy as np

from perception.ops.listen import parse_listen
from perception.runtime.node import Node
from perception.viewer.overlay import FILL_ALPHA, colour_of, labels, overlay_rgba
from perception.viewer.server import Viewer
from perception.wire.messages import FrameMessage, ImageMessage
from perception.wire.subscriber import Subscriber
from tests.node_helpers import run_cli
from tests.ops_support import NodeThread
from tests.viewer_support import FRAMES, viewer_node_config
from tests.waiting import wait_until


class EventStream:
    """Reads server-sent events from a real HTTP connection in a thread."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[str, dict]] = []
        self._reply = urllib.request.urlopen(url, timeout=30)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        name = ""
        for raw in self._reply:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                self.events.append((name, json.loads(line[6:])))

    def of(self, name: str) -> list[dict]:
        return [payload for event, payload in self.events if event == name]

    def close(self) -> None:
        self._reply.close()


def test_the_event_stream_waits_for_the_node_then_carries_its_frames_images_and_stats(tmp_path: Path) -> None:
    config = viewer_node_config(tmp_path, fps=8.0, subscribers=1)
    viewer = Viewer(config.publish.endpoint, "cam0", parse_listen("127.0.0.1:0", "--port"))
    try:
        stream = EventStream(viewer.url + "events")
        first = wait_until(lambda: stream.of("status"), what="a status event")[0]
        assert first == {"connected": False, "text": f"waiting for perception/cam0/ on {config.publish.endpoint}"}
        with NodeThread(Node.from_config(config)):
            last = wait_until(lambda: [f for f in stream.of("frame") if f["frame_index"] == FRAMES - 1],
                              what="the last frame")[-1]
        assert last["width"] == 128 and last["height"] == 96
        assert last["image"].startswith("data:image/jpeg;base64,") and last["image_matches"]
        assert last["overlay"].startswith("data:image/png;base64,")
        assert sorted(label["text"].split(" #")[0] for label in last["labels"]) == ["car", "car"]
        assert wait_until(lambda: stream.of("stats"), what="stats")[-1]["fps"] >= 0
        assert any(s.get("state") == "ready" for s in stream.of("status"))
        stream.close()
    finally:
        viewer.close()


def test_overlay_fills_and_outlines_exactly_the_thing_masks(tmp_path: Path) -> None:
    config = viewer_node_config(tmp_path, fps=20.0, subscribers=1)
    with Subscriber(config.publish.endpoint, "cam0", topics=("frame", "image"), rcvhwm=1000, max_age_ms=None) as sub, \
            NodeThread(Node.from_config(config)):
        frame = wait_until(lambda: (m := sub.recv(timeout=0.1)) and isinstance(m, FrameMessage) and m,
                           what="a frame")
        image = wait_until(lambda: (m := sub.recv(timeout=0.1)) and isinstance(m, ImageMessage) and m,
                           what="an image")
    assert image.format == "jpeg" and image.data[:2] == b"\xff\xd8"
    rgba = overlay_rgba(frame)
    things = [o for o in frame.objects if o.is_thing]
    assert len(things) == 2
    union = np.zeros(frame.id_map.shape, bool)
    for obj in things:
        mask = frame.mask(obj.id)
        union |= mask
        assert (rgba[mask][:, :3] == colour_of(obj.instance_id, obj.id)).all()
        assert set(np.unique(rgba[mask][:, 3])) == {FILL_ALPHA, 255}  # filled inside, opaque outline
    assert (rgba[~union, 3] == 0).all()  # stuff (road, sky) and void stay clear
    assert [label["x"] for label in labels(frame)] == [o.bbox[0] for o in things]


def test_viewer_port_in_use_and_public_address_are_one_line_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("view", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"perception view: error: viewer address 127.0.0.1:{port} is in use: "
        "choose another port, or stop the process that holds it")
    public = run_cli("view", "--host", "0.0.0.0", "--port", "0")
    assert public.returncode == 2
    assert "refusing to serve viewer on non-loopback address 0.0.0.0:0" in public.stderr
