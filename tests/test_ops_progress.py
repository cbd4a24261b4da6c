"""Progress of long work: a tqdm bar with ETA on a terminal, plain periodic lines elsewhere."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from perception.ops.progress import Progress
from tests.node_helpers import REPO, image_folder, run_cli, write_launch


class SteppedClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_interval_with_rate_and_eta_then_a_closing_line() -> None:
    out, clock = io.StringIO(), SteppedClock()
    with Progress("rendering", 100, stream=out, interval_s=5.0, clock=clock) as bar:
        for done in range(1, 101):
            clock.now += 0.25  # 4 frames a second
            bar.update(done)
            if done == 50:
                bar.postfix("12.0 fps")
    lines = out.getvalue().splitlines()
    assert lines[0] == "rendering: 20/100 frames (20%), 4.0 frames/s, ETA 20 s"
    assert lines[2] == "rendering: 60/100 frames (60%), 4.0 frames/s, ETA 10 s, 12.0 fps"
    assert len(lines) == 6  # every 5 s of 25 s, then the closing line
    assert lines[-1] == "rendering: 100 frames in 25.0 s"


def _on_a_terminal(*args: str) -> str:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a 120x24 terminal
    child = subprocess.Popen([sys.executable, "-m", "perception", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    assert child.wait(timeout=120) == 0, screen.decode(errors="replace")
    return screen.decode(errors="replace")


def test_synth_on_a_terminal_draws_a_bar_with_eta(tmp_path: Path) -> None:
    screen = _on_a_terminal("synth", "--out", str(tmp_path / "d.mcap"), "--frames", "12", "--seed", "5")
    assert "rendering: 100%" in screen
    assert "12/12 [" in screen and "frame/s]" in screen  # tqdm's elapsed<remaining, rate


def test_lossless_replay_on_a_terminal_draws_a_bar_and_elsewhere_a_closing_line(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 6)
    launch = write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/n.sock")  # rate 0: lossless
    screen = _on_a_terminal("run", str(launch))
    assert "replaying: 100%" in screen and "6/6 [" in screen
    plain = run_cli("run", str(launch))
    assert plain.returncode == 0
    assert any(line.startswith("replaying: 6 frames in ") for line in plain.stderr.splitlines())
