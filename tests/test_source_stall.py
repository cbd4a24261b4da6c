"""A live camera whose read() blocks forever is abandoned and reopened after the stall timeout, and
frames resume; the stuck thread does not keep the process from exiting (issue 22, item 7c)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from perception.capture.thread import Backoff
from perception.runtime.config import load_launch, override
from perception.wire.messages import FrameMessage, StatusMessage
from perception.wire.subscriber import Subscriber
from tests.blocking_source import BlockingCamera
from tests.node_helpers import REPO, run_listened, write_launch
from tests.wire_support import free_tcp_endpoint


def test_a_read_that_blocks_forever_is_abandoned_and_the_camera_reopened(tmp_path: Path) -> None:
    BlockingCamera.instances.clear()
    config = load_launch(write_launch(tmp_path, "blocking:?fps=100&block_after=5", f"ipc://{tmp_path}/s.sock"))
    config = override(config, "source", stall_timeout_s=0.3)
    config = override(config, "run", max_frames=30)
    try:
        run = run_listened(config, topics=("frame", "status"), backoff=Backoff(first_s=0.01, max_s=0.05))
        stuck, reopened = BlockingCamera.instances
        assert stuck.blocked.is_set() and not stuck.closed  # still inside read(): nobody may touch it
        stuck_threads = [t for t in threading.enumerate() if t.name == "capture-cam0-read" and t.is_alive()]
        assert stuck_threads and all(t.daemon for t in stuck_threads)
    finally:
        BlockingCamera.release_all()
    assert reopened.delivered == 25 and reopened.closed
    statuses = run.statuses()
    lost = next(i for i, m in enumerate(statuses) if m.state == "source_lost")
    assert "no frame for 0.3 s" in statuses[lost].detail
    assert "ready" in [m.state for m in statuses[lost:]]
    frames = run.frames()
    assert [m.frame_index for m in frames] == sorted(m.frame_index for m in frames)
    assert max(m.frame_index for m in frames) == 29  # frames resumed after the reopen, up to max_frames
    assert run.report is not None
    counters = run.report.counters
    assert counters["read"] == 30 == counters["processed"] + sum(counters["dropped"].values())
    assert len(frames) == counters["processed"]


def test_a_node_whose_camera_read_is_stuck_still_ends_and_exits(tmp_path: Path) -> None:
    """The abandoned read stays blocked for good in the child; the process still exits 0 when its run ends."""
    marker = tmp_path / "opened"
    endpoint = free_tcp_endpoint()
    launch = write_launch(tmp_path, f"blocking:?fps=100&block_after=5&opened={marker}", endpoint,
                          extra="")
    launch.write_text(launch.read_text().replace("rate = 0.0\n", "rate = 0.0\nstall_timeout_s = 0.3\n"))
    node = subprocess.Popen([sys.executable, "-m", "perception", "run", str(launch), "--max-frames", "30",
                             "--wait-subscribers", "1"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    states: list[str] = []
    frames_after_lost = 0
    try:
        with Subscriber(endpoint, "cam0", topics=("frame", "status"), max_age_ms=None) as sub:
            while (msg := sub.recv(timeout=30)) is not None:
                if isinstance(msg, StatusMessage):
                    states.append(msg.state)
                    if msg.state == "stopped":
                        break
                elif isinstance(msg, FrameMessage) and "source_lost" in states:
                    frames_after_lost += 1
        _, err = node.communicate(timeout=30)
    finally:
        node.kill()
    assert node.returncode == 0, err
    assert marker.read_text().splitlines() == ["open 1", "open 2"]
    assert "source_lost" in states and frames_after_lost > 0
    assert "read 30 = processed" in err
