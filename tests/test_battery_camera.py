"""Fault battery, camera loss (issue 22, item 8): a real MJPEG camera on loopback drops its
connection mid-stream and comes back after a restart; the node reports the loss, reconnects, and
goes on with the camera's next frames: none black, none repeated, every one accounted for."""

from __future__ import annotations

import threading
from pathlib import Path

from perception.capture.thread import Backoff
from perception.record.drive import read_drive
from perception.runtime.config import load_launch, override
from tests.mjpeg_server import MjpegCamera, frame_of
from tests.node_helpers import run_listened, write_launch
from tests.waiting import wait_until

DROP_AFTER = 15  # frames on the first connection
FRAMES = 40  # frames the node reads in all


def test_an_mjpeg_camera_that_drops_and_restarts_is_recovered_with_no_black_or_repeated_frame(
        tmp_path: Path) -> None:
    out = tmp_path / "run.mcap"
    with MjpegCamera(fps=50) as camera:
        camera.drop_after(DROP_AFTER)

        def restart_once_refused() -> None:  # the node tried while it was down: bring it back
            wait_until(lambda: camera.refused >= 1, timeout=60, what="a reconnect attempt while down")
            camera.down.clear()

        restarter = threading.Thread(target=restart_once_refused, daemon=True)
        restarter.start()
        config = load_launch(write_launch(tmp_path, camera.url, f"ipc://{tmp_path}/cam.sock"))
        config = override(config, "run", max_frames=FRAMES)
        config = override(config, "record", path=out, image_format="png")
        run = run_listened(config, topics=("frame", "status"), backoff=Backoff(first_s=0.05, max_s=0.2))
        restarter.join(timeout=5)
        connections, refused = camera.connections, camera.refused
    assert connections == 2 and refused >= 1
    states = run.states()
    lost = states.index("source_lost")
    assert "ready" in states[lost:]
    assert run.report is not None
    counters = run.report.counters
    assert counters["read"] == FRAMES == counters["processed"] + sum(counters["dropped"].values())
    assert len(run.frames()) == counters["processed"]
    # what the node processed, from the recording: each picture tells which camera frame it was
    indexes = [frame_of(frame.bgr) for frame in read_drive(out)]
    assert len(indexes) == counters["processed"]
    assert None not in indexes  # no black, grey or torn picture
    seen = [i for i in indexes if i is not None]
    assert seen == sorted(set(seen))  # none repeated, in order
    assert seen[0] < DROP_AFTER <= seen[-1]  # frames from before the drop and from after the restart
