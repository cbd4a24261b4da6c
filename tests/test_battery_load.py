"""Fault battery, load (issue 22, item 8): a camera far faster than the pipeline is dropped
latest-wins with every frame accounted for; a node running for a long time keeps its memory flat.
The soak lasts PERCEPTION_SOAK_S seconds (default 2 h) under `make test-long`, 4 s here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perception.runtime.config import load_launch
from perception.wire.messages import FrameMessage, StatusMessage
from perception.wire.subscriber import Subscriber
from tests.node_helpers import REPO, run_listened, write_launch
from tests.wire_support import free_tcp_endpoint

MIB = 1024 * 1024


def test_an_overloaded_node_drops_latest_wins_and_accounts_for_every_frame(tmp_path: Path) -> None:
    # 1,000 fps of 640x480 frames: far more than preprocessing, the engine and the output loop take
    config = load_launch(write_launch(tmp_path, "fake:?fps=1000&total=600&width=640&height=480",
                                      f"ipc://{tmp_path}/load.sock"))
    run = run_listened(config, topics=("frame", "status"))
    assert run.report is not None
    counters = run.report.counters
    dropped = counters["dropped"]
    assert counters["read"] == 600 == counters["processed"] + sum(dropped.values())
    assert dropped.get("overwritten", 0) > 0 and set(dropped) <= {"overwritten", "stale", "shutdown"}
    frames = run.frames()
    assert len(frames) == counters["processed"] == run.report.published
    assert [m.seq for m in frames] == list(range(len(frames)))  # what was published all arrived
    stopped = run.statuses()[-1]
    assert stopped.state == "stopped" and stopped.counters == counters


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024


def _soak(tmp_path: Path, seconds: float, allowed_growth: int) -> None:
    endpoint = free_tcp_endpoint()
    launch = write_launch(tmp_path, "fake:?fps=60&width=320&height=240", endpoint)
    node = subprocess.Popen([sys.executable, "-m", "perception", "run", str(launch), "--quiet",
                             "--wait-subscribers", "1"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    samples: list[int] = []
    try:
        with Subscriber(endpoint, "cam0", topics=("frame", "status"), max_age_ms=None) as sub:
            frames = 0
            while frames < 150:  # warmed up: allocator pools, tracker, queues at their working size
                frames += isinstance(sub.recv(timeout=60), FrameMessage)
            samples.append(_rss(node.pid))
            end = time.monotonic() + seconds
            next_sample = time.monotonic() + min(60.0, seconds / 10)
            while time.monotonic() < end:
                msg = sub.recv(timeout=5)
                assert msg is not None, "the node went silent"
                if time.monotonic() >= next_sample:
                    samples.append(_rss(node.pid))
                    next_sample += min(60.0, seconds / 10)
            samples.append(_rss(node.pid))
            node.terminate()
            last: StatusMessage | None = None
            while (msg := sub.recv(timeout=10)) is not None:
                if isinstance(msg, StatusMessage):
                    last = msg
                    if msg.state == "stopped":
                        break
        _, err = node.communicate(timeout=30)
    finally:
        node.kill()
    assert node.returncode == 0, err
    assert last is not None and last.state == "stopped"
    counters = last.counters
    assert counters["read"] == counters["processed"] + sum(counters["dropped"].values())
    growth = max(samples) - samples[0]
    print(f"soak {seconds:g} s: rss {samples[0] / MIB:.1f} -> max {max(samples) / MIB:.1f} MiB "
          f"({len(samples)} samples, {counters['processed']} frames)")
    assert growth < allowed_growth, [s // MIB for s in samples]


def test_a_short_soak_keeps_memory_flat(tmp_path: Path) -> None:
    _soak(tmp_path, 4.0, 32 * MIB)


@pytest.mark.long
def test_a_long_soak_keeps_memory_flat(tmp_path: Path) -> None:
    _soak(tmp_path, float(os.environ.get("PERCEPTION_SOAK_S", "7200")), 32 * MIB)
