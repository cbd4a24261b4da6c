"""--log-level / --log-json for journald, and the live status line `perception run` keeps on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.node_helpers import REPO, image_folder, run_cli, write_launch


def _launch(tmp_path: Path) -> Path:
    frames = image_folder(tmp_path / "frames", 4)
    return write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/n.sock")


def test_json_logs_are_one_object_a_line_with_fields(tmp_path: Path) -> None:
    result = run_cli("--log-json", "--log-level", "debug", "run", str(_launch(tmp_path)), "--quiet")
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    states = [(e["state"], e["level"]) for e in entries if e["logger"] == "perception.ops.operations"]
    # start-up steps are debug (at info they would stand above a start-up error's one line)
    assert states == [("starting", "debug"), ("warming_up", "debug"), ("ready", "info"), ("stopped", "info")]
    ready = next(e for e in entries if e.get("state") == "ready")
    assert ready["level"] == "info" and ready["camera"] == "cam0" and ready["message"] == "state ready"
    assert ready["time"].endswith("Z")


def test_log_level_warning_hides_the_info_lines(tmp_path: Path) -> None:
    result = run_cli("--log-level", "warning", "run", str(_launch(tmp_path)), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "state ready" not in result.stderr
    plain = run_cli("run", str(_launch(tmp_path / "b")), "--quiet")
    assert "perception: state ready" in plain.stderr.splitlines()


def test_run_on_a_terminal_keeps_one_live_status_line(tmp_path: Path) -> None:
    launch = write_launch(tmp_path, "fake:?fps=30&total=45", f"ipc://{tmp_path}/n.sock")
    controller, terminal = pty.openpty()
    node = subprocess.Popen([sys.executable, "-m", "perception", "run", str(launch)], cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the node exited and closed its end
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    assert node.wait(timeout=30) == 0
    text = screen.decode(errors="replace")
    live = text.split("\r\x1b[K")[1:]
    assert live, text
    assert any(part.startswith("ready: ") and " fps, e2e p50 " in part for part in live)
    assert "read 45 = processed" in text  # the summary follows the live line, on its own line
