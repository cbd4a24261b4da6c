"""The issue's "done when": a drive, a video and an image folder in one node; one of them dies, the others go on.

The video comes from an HTTP server on loopback that the test stops mid-run, so the camera
loses its stream for real (FFmpeg's reconnects are refused). The other two are paced at their
recorded rate; what is asserted is counted, not timed: every frame they read is accounted for,
they keep publishing contiguous streams after the loss, and only the lost camera says so.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from pathlib import Path

from perception.runtime.config import load_launch, override
from perception.wire.messages import FrameMessage, StatusMessage
from tests.node_helpers import image_folder, video_file
from tests.test_multicam import RawListener, _balanced, _launch, _start

FRAMES = 100  # per paced camera: 5 s at 20 fps
AFTER_LOSS = 20  # frames each other camera must publish once the video is lost


def _serve(folder: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_lost_video_stream_leaves_the_drive_and_the_image_folder_publishing(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    video_file(tmp_path / "www" / "clip.avi", 30)
    server = _serve(tmp_path / "www")
    cameras = {"drive": f"synthetic:?seed=3&frames={FRAMES}&fps=20&width=128&height=96",
               "stills": f"images:{image_folder(tmp_path / 'frames', FRAMES)}?fps=20",
               "clip": f"http://127.0.0.1:{server.server_address[1]}/clip.avi"}
    launch = _launch(tmp_path, cameras)
    launch.write_text(launch.read_text().replace("rate = 0.0", "rate = 1.0"))  # recorded timing
    config = override(load_launch(launch), "publish", wait_subscribers=1, sndhwm=10_000)
    listener = RawListener(config.publish.endpoint, list(cameras))
    node, runner, result = _start(config)
    deadline = time.monotonic() + 60

    def wait(what: str, done: object) -> None:
        while not done() and time.monotonic() < deadline:  # type: ignore[operator]
            time.sleep(0.02)
        assert done(), what  # type: ignore[operator]

    wait("the video's first frames", lambda: len(listener.frames("clip")) >= 3)
    server.shutdown()
    server.server_close()  # from here every reconnect is refused
    # (the clip may have ended and been reopened before: only a loss after the shutdown counts, and a
    # connection already open may still deliver the rest of its clip first)
    killed_at = len(listener.received)

    def lost_index() -> int | None:
        return next((i for i, (_, m) in enumerate(listener.received[killed_at:], killed_at)
                     if isinstance(m, StatusMessage) and m.camera == "clip" and m.state == "source_lost"), None)

    wait("the video camera reports source_lost", lambda: lost_index() is not None)
    lost_at = lost_index()
    assert lost_at is not None

    def after_loss(camera: str) -> int:
        return sum(isinstance(m, FrameMessage) and m.camera == camera for _, m in listener.received[lost_at:])

    wait(f"{AFTER_LOSS} frames of each other camera after the loss",
         lambda: min(after_loss("drive"), after_loss("stills")) >= AFTER_LOSS)
    wait("the paced cameras reach their end", lambda: all(
        c.counters.read == FRAMES for c in node.cameras if c.name != "clip"))
    node.stop()
    runner.join(30)
    listener.join()
    report = result[0]

    for camera in ("drive", "stills"):
        frames = listener.frames(camera)
        assert [f.seq for f in frames] == list(range(len(frames))), camera  # contiguous through the loss
        counters = report.cameras[camera]["counters"]
        assert counters["read"] == FRAMES and counters["dropped"].get("error", 0) == 0 and _balanced(report, camera)
        assert len(frames) == counters["processed"]
        assert "source_lost" not in listener.states(camera)
    clip = listener.frames("clip")
    assert [f.seq for f in clip] == list(range(len(clip))) and _balanced(report, "clip")
    states_after = [m.state for _, m in listener.received[lost_at:] if isinstance(m, StatusMessage)
                    and m.camera == "clip"]
    assert "ready" not in states_after[:-1] and states_after[-1] == "stopped"  # lost until the end
