"""CURVE end to end: `perception keys`, `perception run --curve-keys`, `perception echo --curve-keys`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.node_helpers import REPO, image_folder, run_cli, write_launch
from tests.wire_support import free_tcp_endpoint


def test_keys_run_and_echo_with_curve(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = run_cli("keys", str(keys))
    assert made.returncode == 0, made.stderr
    assert sorted(Path(line).relative_to(keys).as_posix() for line in made.stdout.split()) == [
        "client.key_secret", "clients/client.key", "server.key", "server.key_secret"]
    client = tmp_path / "client-keys"  # what the planner's machine holds
    client.mkdir()
    shutil.copy(keys / "server.key", client)
    shutil.copy(keys / "client.key_secret", client)
    endpoint = free_tcp_endpoint()
    frames = image_folder(tmp_path / "frames", 5)
    launch = write_launch(tmp_path, f"images:{frames}", endpoint)
    node = subprocess.Popen(
        [sys.executable, "-m", "perception", "run", str(launch), "--curve-keys", str(keys), "--rate", "0",
         "--wait-subscribers", "1", "--quiet"],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        stranger = subprocess.Popen(  # no keys: it must see nothing, and not hold the node back
            [sys.executable, "-m", "perception", "echo", "--endpoint", endpoint, "--timeout", "3"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        echo = run_cli("echo", "--endpoint", endpoint, "--curve-keys", str(client), "--count", "5",
                       "--timeout", "30", "--max-age-ms", "0")
        out, err = stranger.communicate(timeout=30)
        _, node_err = node.communicate(timeout=30)
    finally:
        node.kill()
    assert echo.returncode == 0, echo.stderr
    assert echo.stdout.count(" frame ") == 5 and "5 frames shown" in echo.stderr
    assert stranger.returncode == 2 and out == "" and "no message" in err
    assert node.returncode == 0, node_err


@pytest.mark.parametrize("damage", ["missing", "no clients", "clients is a file"])
def test_run_with_an_unusable_key_folder_stops_start_up(tmp_path: Path, damage: str) -> None:
    keys = tmp_path / "keys"
    if damage != "missing":
        assert run_cli("keys", str(keys)).returncode == 0
        shutil.rmtree(keys / "clients")
        (keys / "clients").mkdir() if damage == "no clients" else (keys / "clients").write_text("robot\n")
    launch = write_launch(tmp_path, f"images:{image_folder(tmp_path / 'frames', 1)}", free_tcp_endpoint())
    result = run_cli("run", str(launch), "--curve-keys", str(keys))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    expected = {"missing": "does not exist", "no clients": "nobody could subscribe", "clients is a file": "is a file"}
    assert len(lines) == 1 and expected[damage] in lines[0]
    assert "Traceback" not in result.stderr


def test_curve_allows_a_public_endpoint_that_plain_runs_refuse(tmp_path: Path) -> None:
    launch = write_launch(tmp_path, f"images:{image_folder(tmp_path / 'frames', 1)}", "tcp://0.0.0.0:*")
    plain = run_cli("run", str(launch))
    assert plain.returncode == 2 and "--curve-keys" in plain.stderr
    assert run_cli("keys", str(tmp_path / "keys")).returncode == 0
    curve = run_cli("run", str(launch), "--curve-keys", str(tmp_path / "keys"), "--quiet")
    assert curve.returncode == 0, curve.stderr
