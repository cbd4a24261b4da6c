"""Real footage: OpenCV's vtest.avi (people walking past a fixed camera) through the motion card,
as a user runs it: `perception run --card engines/classic-motion.toml --source vtest.avi`, with
a real subscriber on the other end."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from perception.tools.sample_video import fetch_vtest
from perception.wire.messages import FrameMessage
from perception.wire.subscriber import Subscriber
from tests.node_helpers import REPO

FRAMES = 300


@pytest.fixture(scope="module")
def vtest() -> Path:
    path, why = fetch_vtest()
    if path is None:
        pytest.skip(why)
    return path


def test_people_in_vtest_are_published_as_tracked_thing_segments(vtest: Path, tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/vtest.sock"
    command = [sys.executable, "-m", "perception", "run", "--card", str(REPO / "engines" / "classic-motion.toml"),
               "--source", str(vtest), "--endpoint", endpoint, "--rate", "0", "--max-frames", str(FRAMES),
               "--wait-subscribers", "1"]
    frames: list[FrameMessage] = []
    with Subscriber(endpoint, "cam0", topics=("frame",), rcvhwm=2000, max_age_ms=None) as sub:
        node = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
        try:
            while True:
                msg = sub.recv(timeout=0.2)
                if isinstance(msg, FrameMessage):
                    frames.append(msg)
                elif msg is None and node.poll() is not None:
                    break  # the node ended and nothing more is queued
            _, err = node.communicate(timeout=30)
        finally:
            if node.poll() is None:
                node.kill()
    assert node.returncode == 0, err
    assert f"read {FRAMES} = processed {FRAMES} + dropped 0" in err  # every frame segmented and published
    # a Python subscriber on a busy machine may miss a few at the publisher's high-water mark
    assert len(frames) >= 0.9 * FRAMES and frames[0].id_map.shape == (576, 768)
    people = [o for m in frames for o in m.objects if o.class_name == "person"]
    assert all(o.is_thing and o.instance_id > 0 for o in people)
    lasting = [track for track, seen in Counter(o.instance_id for o in people).items() if seen >= 10]
    assert len(lasting) >= 5  # several people followed for a second or more (the clip is 10 fps)
    busiest = max(frames, key=lambda m: sum(o.class_name == "person" for o in m.objects))
    assert sum(o.class_name == "person" for o in busiest.objects) >= 3
