"""Every shipped launch file parses and points at files that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.config import load_launch
from perception.inference.engine import available_engines

LAUNCH = Path(__file__).resolve().parent.parent / "launch"


@pytest.mark.parametrize("path", sorted(LAUNCH.glob("*.toml")), ids=lambda p: p.name)
def test_launch_file_is_valid(path: Path) -> None:
    config = load_launch(path)
    assert config.model.card.is_file()
    assert config.model.engine in available_engines()
