"""Fresh or dropped: a subscriber is never handed a frame older than its budget, and every frame
the node published is accounted for exactly (received + gaps + superseded + stale == published)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perception.wire.errors import WireError
from perception.wire.messages import FrameMessage, StatusMessage
from perception.wire.publisher import Publisher
from perception.wire.schema import Kind
from perception.wire.subscriber import Subscriber
from tests.node_helpers import REPO, write_launch
from tests.wire_support import first, free_tcp_endpoint, ipc_endpoint, read_until_stopped, result

PLANNER_SLEEP_S = 0.2  # a planner that needs 200 ms per frame beside a 30 fps node
NODE_FRAMES = 120  # 4 s of a 30 fps camera


def test_slow_subscriber_beside_a_30fps_node_gets_only_fresh_frames_and_exact_counts(tmp_path: Path) -> None:
    endpoint = free_tcp_endpoint()
    launch = write_launch(tmp_path, "fake:?fps=30&width=320&height=240", endpoint)
    node = subprocess.Popen(
        [sys.executable, "-m", "perception", "run", str(launch), "--wait-subscribers", "1",
         "--max-frames", str(NODE_FRAMES), "--quiet"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )
    ages_ms: list[float] = []
    try:
        with Subscriber(endpoint, "cam0", topics=(Kind.FRAME, Kind.STATUS)) as sub:
            assert sub.max_age_ns == 500_000_000 and sub.same_host  # the defaults under test

            def plan(frame: FrameMessage) -> None:
                ages_ms.append(sub.age_ns(frame) / 1e6)  # age at the moment it is handed over
                time.sleep(PLANNER_SLEEP_S)

            final = read_until_stopped(sub, plan)
            totals = sub.totals
        _, err = node.communicate(timeout=30)
    finally:
        node.kill()
    assert node.returncode == 0, err
    assert final is not None, "the node's stopped status never came"
    published = final.counters["processed"]
    # a loaded machine may skip camera frames before inference (counted by the node): published <= read
    assert final.header["frames"] == published and final.counters["read"] == NODE_FRAMES
    assert ages_ms and max(ages_ms) < 500.0
    assert totals.frames_received == len(ages_ms)
    assert totals.frames_received + totals.missed_frames + totals.superseded + totals.stale == published
    assert totals.frames_accounted == published and totals.rejected == 0
    print(f"published {published}: received {totals.frames_received}, missed {totals.missed_frames}, "
          f"superseded {totals.superseded}, stale {totals.stale}; oldest handed {max(ages_ms):.1f} ms")
    # at 5 frames/s of reading, most of 30 frames/s cannot be shown: they were dropped, and counted
    assert totals.stale + totals.missed_frames > published // 2


def test_latest_only_subscriber_accounts_for_superseded_and_stale(tmp_path: Path) -> None:
    with (
        Publisher(ipc_endpoint(tmp_path), sndhwm=100) as pub,
        Subscriber(pub.endpoint, latest_only=True, rcvhwm=100, max_age_ms=50) as sub,
    ):
        assert pub.wait_for_subscription(Kind.STATUS)
        for i in range(10):
            pub.publish_frame(result(i))
        first(sub, FrameMessage)  # the newest of what was queued, the rest superseded
        for i in range(10, 20):
            pub.publish_frame(result(i))
        pub.publish_status("ready", {})
        time.sleep(0.1)  # the budget is from publish_ns: every frame above is now older than 50 ms
        status = first(sub, StatusMessage)
    assert status.header["frames"] == 20
    totals = sub.totals
    assert totals.frames_received == 1 and totals.superseded >= 9 and totals.stale >= 1
    assert totals.frames_accounted == 20


def test_frames_lost_after_the_last_one_received_are_counted_from_the_status(tmp_path: Path) -> None:
    with (
        Publisher(ipc_endpoint(tmp_path), sndhwm=100) as pub,
        Subscriber(pub.endpoint, max_age_ms=None) as sub,
    ):
        assert pub.wait_for_subscription(Kind.FRAME)
        pub.publish_frame(result(0))
        first(sub, FrameMessage)
        pub._next_seq("cam0", Kind.FRAME)  # two frames that never leave the node (as if its queue were full)
        pub._next_seq("cam0", Kind.FRAME)
        pub.publish_status("stopped", {})
        status = first(sub, StatusMessage)
    assert status.header["frames"] == 3
    assert (sub.totals.frames_received, sub.totals.missed_frames, sub.totals.gaps) == (1, 2, 1)
    assert sub.totals.frames_accounted == 3


def test_off_host_freshness_uses_the_capture_wall_clock(tmp_path: Path) -> None:
    """Another host's CLOCK_MONOTONIC means nothing here: the capture stamp (wall clock) decides."""
    with (
        Publisher(ipc_endpoint(tmp_path), sndhwm=100) as pub,
        Subscriber(pub.endpoint, same_host=False, topics=("frame", "status")) as sub,
    ):
        assert pub.wait_for_subscription(Kind.FRAME)
        pub.publish_frame(result(0))  # stamp_ns in 2023: years old by the wall clock, fresh by the monotonic one
        pub.publish_frame(dataclasses.replace(result(1), stamp_ns=time.time_ns()))
        got = first(sub, FrameMessage)
    assert got.frame_index == 1 and sub.totals.stale == 1 and sub.totals.frames_accounted == 2


@pytest.mark.parametrize("budget", [0, -5.0])
def test_a_budget_that_is_not_positive_is_refused(budget: float) -> None:
    with pytest.raises(WireError, match="max_age_ms"):
        Subscriber("tcp://127.0.0.1:5999", max_age_ms=budget)
