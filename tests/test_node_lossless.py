"""Lock-step runs: `--rate 0 --wait-subscribers 1 --lossless` delivers every frame of a replay to a
slow planner, in order; a planner that stops reading ends the run with an error, never a hang."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from perception.wire.messages import FrameMessage
from perception.wire.subscriber import Subscriber
from tests.node_helpers import REPO, image_folder, write_launch
from tests.wire_support import free_tcp_endpoint, read_until_stopped

# raw id maps (24 KiB each) fill the kernel buffers and queues after a few dozen frames, so the
# node really waits for the planner
FRAMES = 150


def _lossless_node(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    endpoint = free_tcp_endpoint()
    launch = write_launch(tmp_path, f"images:{image_folder(tmp_path / 'frames', FRAMES)}", endpoint)
    node = subprocess.Popen(
        [sys.executable, "-m", "perception", "run", str(launch), "--rate", "0", "--wait-subscribers", "1",
         "--lossless", "--compression", "raw", *extra],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    return node, endpoint


def test_a_slow_planner_receives_every_frame_in_order(tmp_path: Path) -> None:
    node, endpoint = _lossless_node(tmp_path)
    seqs: list[int] = []

    def plan(frame: FrameMessage) -> None:
        seqs.append(frame.seq)
        time.sleep(0.01)  # a planner slower than the node

    try:
        with Subscriber(endpoint, topics=("frame", "status"), max_age_ms=None, rcvhwm=2) as planner:
            assert read_until_stopped(planner, plan) is not None
            totals = planner.totals
        _, err = node.communicate(timeout=60)
    finally:
        node.kill()
    assert node.returncode == 0, err
    assert seqs == list(range(FRAMES))
    assert totals.missed_frames == 0 and totals.frames_accounted == FRAMES
    assert f"published {FRAMES} frames to 1 frame subscriber (most at once), 0 dropped" in err


def test_a_planner_that_stops_reading_ends_the_run_with_an_error(tmp_path: Path) -> None:
    node, endpoint = _lossless_node(tmp_path, "--lossless-timeout", "1")
    try:
        with Subscriber(endpoint, topics=("frame",), max_age_ms=None, rcvhwm=2) as planner:
            first = planner.recv(timeout=60)
            assert isinstance(first, FrameMessage)
            _, err = node.communicate(timeout=60)  # the planner reads nothing more meanwhile
    finally:
        node.kill()
    assert node.returncode == 2
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "lossless" in errors[0] and "1 frame subscriber(s)" in errors[0], err
    assert "Traceback" not in err
