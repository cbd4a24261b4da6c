"""Every shipped launch file parses and points at files that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.inference.engine import available_engines
from perception.runtime.config import load_launch

LAUNCH = Path(__file__).resolve().parent.parent / "launch"


@pytest.mark.parametrize("path", sorted(LAUNCH.glob("*.toml")), ids=lambda p: p.name)
def test_launch_file_is_valid(path: Path) -> None:
    config = load_launch(path)
    assert config.model.card.is_file()
    assert config.model.engine in available_engines()


def test_card_is_found_next_to_the_launch_file_and_recordings_go_to_the_working_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launch = tmp_path / "conf" / "l.toml"
    launch.parent.mkdir()
    launch.write_text('[model]\ncard = "cards/m.toml"\n[record]\npath = "out/run.mcap"\n')
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = load_launch(launch)
    assert config.model.card == (tmp_path / "conf" / "cards" / "m.toml").resolve()
    assert config.record.path == (work / "out" / "run.mcap").resolve()
