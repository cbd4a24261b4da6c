"""SIGINT/SIGTERM at every moment of `perception run`'s start-up: exit 130/143, no traceback, no
partial file (issue 22, item 6). Real child processes and real signals; each signal is sent when
the child reaches an observable state (its signal mask, a debug line, the camera being opened),
and a sweep adds fixed delays across the whole start-up window. The camera here never finishes
opening, so every signal lands in start-up, never in the steady state (where SIGTERM exits 0)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mcap.reader import make_reader

from tests.node_helpers import REPO, write_launch

SIGTERM_BIT = 1 << (signal.SIGTERM - 1)  # in /proc/PID/status SigCgt: the child catches SIGTERM
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


class StartingNode:
    """`perception --log-level debug run` on a camera whose open() never returns, recording to a file."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.marker = tmp / "opened"
        self.recording = tmp / "out" / "run.mcap"
        self.recording.parent.mkdir(parents=True, exist_ok=True)
        launch = write_launch(tmp, f"blocking:?hold_open=1&opened={self.marker}", f"ipc://{tmp}/node.sock")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # PERCEPTION_SOURCES names the blocking camera (conftest)
        self.started = time.monotonic()
        self.child = subprocess.Popen(
            [sys.executable, "-m", "perception", "--log-level", "debug", "run", str(launch), "--record",
             str(self.recording)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.child.stderr is not None
        for line in self.child.stderr:
            self.lines.append(line)

    def _wait(self, ready: object, what: str, timeout: float = 120.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return time.monotonic() - self.started
            if self.child.poll() is not None:
                raise AssertionError(f"the child ended before {what}: {''.join(self.lines)}")
            time.sleep(0.001)
        self.child.kill()
        raise AssertionError(f"no {what} within {timeout} s")

    def catches_sigterm(self) -> bool:
        try:
            status = Path(f"/proc/{self.child.pid}/status").read_text()
        except OSError:
            return False
        mask = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        return bool(int(mask.split()[1], 16) & SIGTERM_BIT)

    def wait_for(self, point: str) -> float:
        """Seconds since the start when the child reached `point`."""
        if point == "imports":  # main() has installed its handlers; the heavy imports follow
            return self._wait(self.catches_sigterm, "handler for SIGTERM")
        if point == "opening the camera":
            return self._wait(self.marker.exists, "camera open")
        return self._wait(lambda: any(point in line for line in self.lines), f"line {point!r}")

    def interrupt(self, signum: int) -> tuple[int, str]:
        self.child.send_signal(signum)
        self.child.wait(timeout=60)
        self._reader.join(timeout=10)
        return self.child.returncode, "".join(self.lines)

    def check_clean_exit(self, signum: int, returncode: int, stderr: str) -> None:
        assert returncode == 128 + signum, stderr
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
        leftovers = [p.name for p in self.recording.parent.iterdir() if p != self.recording]
        assert leftovers == []  # no temporary file next to the recording
        if self.recording.exists():  # opened before the signal: closed whole, never half-written
            with self.recording.open("rb") as stream:
                summary = make_reader(stream).get_summary()
            assert summary is not None and summary.statistics is not None


def _linux_proc() -> bool:
    return Path(f"/proc/{os.getpid()}/status").is_file()


pytestmark = pytest.mark.skipif(not _linux_proc(), reason="reads the child's signal mask from /proc")

POINTS = [  # (where, signal): each phase once, both signals in both modes (exit at once, unwind)
    ("imports", "SIGINT"),
    ("importing the node's libraries", "SIGTERM"),
    ("reading the launch file", "SIGINT"),
    ("making the node's parts", "SIGTERM"),
    ("opening the engine", "SIGINT"),
    ("opening the camera", "SIGTERM"),
]


@pytest.mark.parametrize(("point", "name"), POINTS)
def test_a_signal_at_each_point_of_start_up_exits_cleanly(tmp_path: Path, point: str, name: str) -> None:
    node = StartingNode(tmp_path)
    node.wait_for(point)
    returncode, stderr = node.interrupt(SIGNALS[name])
    node.check_clean_exit(SIGNALS[name], returncode, stderr)
    if point == "opening the camera":  # the node had started: it said so before it stopped
        assert "state stopped (not_started)" in stderr


def _sweep(tmp_path: Path, delays: list[float]) -> list[tuple[float, int]]:
    """One child per delay after the handlers are in, alternating the signal; returns (delay, exit code)."""
    seen = []
    for i, delay in enumerate(delays):
        node = StartingNode(tmp_path / f"run{i}")
        installed = node.wait_for("imports")
        while time.monotonic() - node.started < installed + delay:  # a fixed delay, by design of the sweep
            time.sleep(0.001)
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        returncode, stderr = node.interrupt(signum)
        node.check_clean_exit(signum, returncode, stderr)
        seen.append((delay, returncode))
    return seen


def test_signals_at_fixed_delays_across_start_up_exit_cleanly(tmp_path: Path) -> None:
    delays = [0.0, 0.05, 0.3]
    seen = _sweep(tmp_path, delays)
    assert [code for _, code in seen] == [130, 143, 130]


@pytest.mark.long
def test_two_hundred_signals_at_random_moments_of_start_up_exit_cleanly(tmp_path: Path) -> None:
    probe = StartingNode(tmp_path / "probe")
    window = probe.wait_for("opening the camera") - probe.wait_for("imports")
    probe.check_clean_exit(signal.SIGTERM, *probe.interrupt(signal.SIGTERM))
    rng = random.Random(22)
    delays = [rng.uniform(0.0, window * 1.2) for _ in range(int(os.environ.get("PERCEPTION_SIGNAL_TRIALS", "200")))]
    seen = _sweep(tmp_path, delays)
    assert [code for _, code in seen] == [(130, 143)[i % 2] for i in range(len(delays))]
