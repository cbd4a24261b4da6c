"""Fault battery, churn (issue 22, item 8): a node killed with SIGKILL and started again, over and
over, is seen by one subscriber as exactly one restart each time; subscribers that come and go
beside a steady one change nothing in what the steady one receives or in its accounting."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perception.wire.messages import FrameMessage, StatusMessage
from perception.wire.sequence import RestartEvent
from perception.wire.subscriber import Subscriber
from tests.node_helpers import REPO, image_folder, write_launch
from tests.wire_support import free_tcp_endpoint, read_until_stopped


def _node(launch: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "perception", "run", str(launch), "--quiet", *args],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)


def _kill_and_restart(tmp_path: Path, runs: int) -> None:
    endpoint = free_tcp_endpoint()
    launch = write_launch(tmp_path, "fake:?fps=50", endpoint)
    restarts: list[RestartEvent] = []
    epochs: list[int] = []
    with Subscriber(endpoint, "cam0", topics=("frame",), max_age_ms=None, on_restart=restarts.append) as sub:
        for _ in range(runs):
            node = _node(launch, "--wait-subscribers", "1")
            try:
                seen = 0
                while seen < 5:  # this run's frames reach the subscriber: the node is up
                    msg = sub.recv(timeout=60)
                    assert isinstance(msg, FrameMessage), f"no frame from run {len(epochs) + 1}"
                    if not epochs or msg.epoch != epochs[-1]:
                        epochs.append(msg.epoch)
                        seen = 0
                    seen += 1
            finally:
                node.kill()
                node.communicate(timeout=30)
            assert node.returncode == -9
    assert len(epochs) == len(set(epochs)) == runs
    assert [(r.old_epoch, r.new_epoch) for r in restarts] == list(itertools.pairwise(epochs))
    assert sub.totals.restarts == runs - 1


def test_a_node_killed_and_restarted_is_reported_once_per_restart(tmp_path: Path) -> None:
    _kill_and_restart(tmp_path, 3)


@pytest.mark.long
def test_twenty_sigkill_restarts_are_each_reported_exactly_once(tmp_path: Path) -> None:
    _kill_and_restart(tmp_path, int(os.environ.get("PERCEPTION_RESTARTS", "20")))


def _subscriber_churn(tmp_path: Path, churners: int) -> None:
    endpoint = free_tcp_endpoint()
    frames = 120
    launch = write_launch(tmp_path, f"images:{image_folder(tmp_path / 'frames', frames)}", endpoint)
    node = _node(launch, "--rate", "0", "--wait-subscribers", "1", "--lossless")
    received: list[int] = []
    churned: list[list[int]] = []
    try:
        with Subscriber(endpoint, "cam0", topics=("frame", "status"), max_age_ms=None) as steady:
            def on_frame(frame: FrameMessage) -> None:
                received.append(frame.seq)
                if len(churned) < churners and frame.seq % 4 == 0:  # another planner joins, reads, leaves
                    with Subscriber(endpoint, "cam0", topics=("frame",), max_age_ms=None) as passer:
                        got = [m.seq for m in passer.messages(timeout=0.2, count=2) if isinstance(m, FrameMessage)]
                    churned.append(got)

            stopped = read_until_stopped(steady, on_frame)
            totals = steady.totals
        _, err = node.communicate(timeout=60)
    finally:
        node.kill()
    assert node.returncode == 0, err
    assert isinstance(stopped, StatusMessage) and stopped.counters["processed"] == frames
    assert received == list(range(frames))  # lock-step for the steady one: every frame, in order
    assert totals.missed_frames == 0 and totals.frames_accounted == frames
    assert len(churned) == churners
    assert all(got == sorted(got) and len(set(got)) == len(got) for got in churned)


def test_subscribers_joining_and_leaving_do_not_disturb_a_steady_one(tmp_path: Path) -> None:
    _subscriber_churn(tmp_path, 10)


@pytest.mark.long
def test_many_subscribers_churning_do_not_disturb_a_steady_one(tmp_path: Path) -> None:
    _subscriber_churn(tmp_path, int(os.environ.get("PERCEPTION_CHURNERS", "25")))
