"""Signals during rendering: no temporary file left, stale ones swept, Ctrl-C honoured at once
(issue 21, items 2 and 13). Real child processes, real signals; waits are on files appearing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.node_helpers import REPO

# long enough that a child which ignores the signal is still rendering when the test gives up
LONG = "5000"


def _start(*args: str, cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "perception", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_temp(folder: Path, child: subprocess.Popen[str], timeout: float = 120.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in folder.glob(".*.tmp-*") if p.stat().st_size > 0] if folder.is_dir() else []
        if found:
            return found[0]
        if child.poll() is not None:
            raise AssertionError(f"child ended before rendering: {child.communicate()}")
        time.sleep(0.02)
    child.kill()
    raise AssertionError("no temporary file appeared")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_synth_killed_with_sigterm_leaves_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "drives" / "long.mcap"
    child = _start("synth", "--out", str(out), "--frames", LONG, cache=tmp_path / "cache")
    temp = _wait_for_temp(out.parent, child)
    assert temp.name == f".long.mcap.tmp-{child.pid}"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM, err
    assert list(out.parent.iterdir()) == []


def test_synth_sweeps_temporary_files_of_dead_processes(tmp_path: Path) -> None:
    folder = tmp_path / "drives"
    folder.mkdir()
    stale = folder / f".old.mcap.tmp-{_dead_pid()}"
    stale.write_bytes(b"\x89MCAP0\r\n half a drive")
    live = folder / f".other.mcap.tmp-{os.getpid()}"  # a writer that still runs keeps its file
    live.write_bytes(b"in progress")
    child = _start("synth", "--out", str(folder / "new.mcap"), "--frames", "2", cache=tmp_path / "cache")
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert sorted(p.name for p in folder.iterdir()) == [live.name, "new.mcap"]


def _cache_folder(cache: Path) -> Path:
    return cache / "perception" / "drives"


def test_ctrl_c_during_the_first_render_exits_130_without_a_cache_file(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    child = _start("run", "--source", f"synthetic:?seed=3&frames={LONG}", "--endpoint",
                   f"ipc://{tmp_path}/node.sock", cache=cache)
    _wait_for_temp(_cache_folder(cache), child)
    child.send_signal(signal.SIGINT)
    # a child that ignored Ctrl-C would still be rendering thousands of frames here
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert list(_cache_folder(cache).iterdir()) == []


def test_a_render_killed_with_sigkill_is_swept_on_the_next_start(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    child = _start("run", "--source", f"synthetic:?seed=3&frames={LONG}", "--endpoint",
                   f"ipc://{tmp_path}/node.sock", cache=cache)
    temp = _wait_for_temp(_cache_folder(cache), child)
    child.kill()
    child.communicate(timeout=60)
    assert temp.exists()  # SIGKILL cannot be cleaned up after by the process itself
    again = _start("run", "--source", "synthetic:?seed=3&frames=2", "--rate", "0", "--quiet", "--endpoint",
                   f"ipc://{tmp_path}/node.sock", cache=cache)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    left = [p.name for p in _cache_folder(cache).iterdir()]
    assert len(left) == 1 and left[0].startswith("synthetic-") and "frames" not in left[0], left
