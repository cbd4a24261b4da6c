"""OpenCV's and FFmpeg's own stderr lines are off unless --log-level debug (issue 21, item 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.node_helpers import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    return subprocess.run([sys.executable, "-m", "perception", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=clean, check=False)


def test_an_undecodable_video_gives_our_line_only_unless_debug_is_asked_for(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(5000))
    quiet = _run("run", "--source", str(junk), "--quiet", "--endpoint", f"ipc://{tmp_path}/a.sock")
    assert quiet.returncode == 2
    assert "moov atom" not in quiet.stderr and "WARN" not in quiet.stderr, quiet.stderr
    lines = quiet.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perception run: error: video file"), quiet.stderr
    loud = _run("--log-level", "debug", "run", "--source", str(junk), "--quiet",
                "--endpoint", f"ipc://{tmp_path}/b.sock")
    assert loud.returncode == 2
    assert "moov atom not found" in loud.stderr or "WARN" in loud.stderr, loud.stderr
