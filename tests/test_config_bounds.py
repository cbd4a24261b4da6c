"""Numbers too large for the C libraries below and nesting too deep for the TOML parser are
config errors: one line naming the setting, exit 2, never a traceback (issue 22, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.node_helpers import image_folder, run_cli, write_launch


def _launch(tmp: Path, threads: str = "1", extra: str = "") -> Path:
    launch = write_launch(tmp, f"images:{image_folder(tmp / 'frames', 1)}", f"ipc://{tmp}/b.sock", extra=extra)
    launch.write_text(launch.read_text().replace("threads = 1\n", f"threads = {threads}\n"))
    return launch


def _one_error_line(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "bad_alloc" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("threads", "extra", "message"),
    [
        ("1", "sndhwm = 100000000000000000000", "[publish] sndhwm = 1e+20 is more than the 1e+06 a node can use"),
        ("1000000000", "", "[model] threads = 1e+09 is more than the 1024 a node can use"),
        ("1", "[run]\nmax_frames = 99999999999999999999", "[run] max_frames = 1e+20 is more than"),
    ],
)
def test_numbers_past_what_the_node_can_use_are_one_config_error(tmp_path: Path, threads: str, extra: str,
                                                                 message: str) -> None:
    line = _one_error_line("run", str(_launch(tmp_path, threads, extra)))
    assert message in line


def test_threads_on_the_command_line_are_range_checked_too(tmp_path: Path) -> None:
    line = _one_error_line("run", str(_launch(tmp_path)), "--threads", str(10**9))
    assert "[model] threads = 1e+09 is more than the 1024 a node can use" in line


def test_a_5000_deep_toml_array_is_one_config_error(tmp_path: Path) -> None:
    launch = _launch(tmp_path)
    with launch.open("a") as file:
        file.write("[run]\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    line = _one_error_line("run", str(launch))
    assert "nests arrays or tables too deeply" in line and str(launch) in line
