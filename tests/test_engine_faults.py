"""A fatal engine error ends the node: `error` published, exit 3, so systemd restarts it (issue 22,
item 7a). The engine is real: ONNX Runtime running a model that loads and fails on every run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from perception.wire.messages import StatusMessage
from perception.wire.subscriber import Subscriber
from tests.node_helpers import REPO, write_launch
from tests.onnx_models import tiny_panoptic
from tests.wire_support import free_tcp_endpoint

ENGINE_FAILED_EXIT = 3


def test_an_engine_that_fails_at_run_time_publishes_error_and_exits_3(tmp_path: Path) -> None:
    endpoint = free_tcp_endpoint()
    launch = write_launch(tmp_path, "fake:?fps=30", endpoint)  # a live camera: only the error can end the run
    # no warm-up run: the engine first fails on a real frame, after `ready`
    launch.write_text(launch.read_text().replace("warmup_runs = 1", "warmup_runs = 0"))
    card = tiny_panoptic(tmp_path / "broken", fails_at_run=True)
    node = subprocess.Popen(
        [sys.executable, "-m", "perception", "run", str(launch), "--card", str(card), "--wait-subscribers", "1"],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        states: list[str] = []
        error: StatusMessage | None = None
        with Subscriber(endpoint, "cam0", topics=("frame", "status"), max_age_ms=None) as sub:
            while error is None:
                msg = sub.recv(timeout=60)
                assert msg is not None, f"no error status; states so far {states}"
                if isinstance(msg, StatusMessage):
                    states.append(msg.state)
                    if msg.state == "error":
                        error = msg
            heard = time.monotonic()
            _, err = node.communicate(timeout=30)
            exit_s = time.monotonic() - heard  # recorded in docs/operations.md, not asserted
            while (msg := sub.recv(timeout=1.0)) is not None:
                if isinstance(msg, StatusMessage):
                    states.append(msg.state)
    finally:
        node.kill()
    assert node.returncode == ENGINE_FAILED_EXIT, err
    assert "ready" in states and states[-2:] == ["error", "stopped"]
    assert "ONNX Runtime failed to run tiny.onnx" in error.detail
    assert "indices element out of data bounds" in error.detail
    lines = err.strip().splitlines()
    assert lines[-1].startswith("perception run: error: ONNX Runtime failed to run tiny.onnx")
    assert "Traceback" not in err and "[E:onnxruntime" not in err
    assert error.counters["read"] >= 1 and error.counters["processed"] == 0
    print(f"exit {exit_s * 1000:.0f} ms after the error status")
