"""systemd notify: a real AF_UNIX datagram socket bound by the test, as systemd binds it for Type=notify."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perception.ops.liveness import Liveness
from perception.ops.sample import NodeSample
from tests.node_helpers import REPO, write_launch


def _start_node(tmp_path: Path, notify_socket: str, **env: str) -> subprocess.Popen[str]:
    launch = write_launch(tmp_path, "fake:?fps=30", f"ipc://{tmp_path}/n.sock")
    return subprocess.Popen([sys.executable, "-m", "perception", "run", str(launch), "--quiet"], cwd=REPO,
                            env={**os.environ, "NOTIFY_SOCKET": notify_socket, **env},
                            stderr=subprocess.PIPE, text=True)


def _receive_until(sock: socket.socket, key: str, into: list[dict[str, str]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        into.append(fields)
        if key in fields:
            return
    raise AssertionError(f"no {key} within {timeout} s; got {into}")


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_watchdog_status_and_stopping_reach_systemds_socket(tmp_path: Path, abstract: bool) -> None:
    name = f"@perception-test-{os.getpid()}-{tmp_path.name}" if abstract else str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:] if abstract else name)
        # WatchdogSec=0.4 s: the node checks twice per 0.2 s ping interval
        node = _start_node(tmp_path, name, WATCHDOG_USEC="400000")
        try:
            messages: list[dict[str, str]] = []
            _receive_until(sock, "READY", messages)
            ready = messages[-1]
            assert ready["READY"] == "1"
            assert ready["STATUS"].startswith("ready")
            assert not any("WATCHDOG" in m for m in messages[:-1])  # no pets before the loop runs
            seen: list[dict[str, str]] = []
            while sum("WATCHDOG" in m for m in seen) < 3 or not any("fps" in m.get("STATUS", "") for m in seen):
                _receive_until(sock, "WATCHDOG", seen)
            status = next(m["STATUS"] for m in seen if "fps" in m.get("STATUS", ""))
            assert status.startswith("ready: ") and " fps, e2e p50 " in status
            node.send_signal(signal.SIGTERM)
            stopping: list[dict[str, str]] = []
            _receive_until(sock, "STOPPING", stopping)
            assert stopping[-1]["STOPPING"] == "1"
        finally:
            node.send_signal(signal.SIGTERM)
            node.communicate(timeout=20)
    assert node.returncode == 0


def test_a_notify_socket_that_is_not_there_is_one_line_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "gone.sock"
    launch = write_launch(tmp_path, "fake:?fps=30", f"ipc://{tmp_path}/n.sock")
    env_result = subprocess.run([sys.executable, "-m", "perception", "run", str(launch), "--quiet"], cwd=REPO,
                                env={**os.environ, "NOTIFY_SOCKET": str(missing)}, capture_output=True, text=True,
                                timeout=60, check=False)
    assert env_result.returncode == 2
    assert env_result.stderr.strip().splitlines()[-1] == (
        f"perception run: error: NOTIFY_SOCKET={missing} cannot be used (nothing listens there): "
        "run under systemd with Type=notify, or unset NOTIFY_SOCKET")


def _sample(processed: int, waiting: int, stale: int = 0) -> NodeSample:
    return NodeSample({"read": processed + waiting, "processed": processed, "dropped": {"stale": stale}}, {},
                      {"capture": waiting, "inference": 0})


def test_watchdog_is_petted_while_frames_move_or_nothing_waits_and_not_when_frames_pile_up() -> None:
    liveness = Liveness()
    assert liveness.progressing(_sample(processed=1, waiting=1))
    assert liveness.progressing(_sample(processed=2, waiting=1))  # moving
    assert liveness.progressing(_sample(processed=2, waiting=1, stale=1))  # stale drops are the stage moving too
    assert liveness.progressing(_sample(processed=2, waiting=0, stale=1))  # a silent camera is not a hang
    assert not liveness.progressing(_sample(processed=2, waiting=1, stale=1))  # a frame waits, none leaves: hung
    assert not liveness.progressing(_sample(processed=2, waiting=1, stale=1))
