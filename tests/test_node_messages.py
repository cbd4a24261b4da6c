"""What the node says about itself: one status per state change, the synthetic-domain warning,
who received the frames, and the start-up banner only once it runs (issue 21, items 11, 12, 14, 15)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from perception.capture.thread import SourceState
from perception.cli import main
from perception.runtime.config import DEFAULT_CARD, NodeConfig, load_launch, override
from perception.wire.messages import MetadataMessage
from tests.node_helpers import image_folder, run_cli, run_listened, write_launch

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def _config(tmp_path: Path, source: str, card: Path | None = None) -> NodeConfig:
    # heartbeats far apart: every status a subscriber hears is then a state change
    launch = write_launch(tmp_path, source, f"ipc://{tmp_path}/n.sock", extra="[run]\nheartbeat_interval_s = 600")
    config = load_launch(launch)
    return override(config, "model", card=card) if card is not None else config


def test_ready_is_published_once_when_the_subscriber_joins_during_the_wait(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 3)
    run = run_listened(_config(tmp_path, f"images:{frames}"), topics=("status",))
    assert run.error is None
    states = run.states()
    assert states.count("ready") == 1, states
    assert states[-1] == "stopped"
    pairs = [(m.state, m.detail) for m in run.statuses()]
    assert all(a != b for a, b in itertools.pairwise(pairs)), pairs


def test_every_stopped_detail_is_documented() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    section = text.split("### 5.3 `status`", 1)[1].split("### 5.4", 1)[0]
    for value in [*(s.value for s in SourceState), "not_started"]:
        assert f"`{value}`" in section, f"status detail {value!r} is not documented in section 5.3"


def test_the_synthetic_model_on_real_footage_warns_once_on_stderr_and_status(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames = image_folder(tmp_path / "frames", 3)
    with caplog.at_level("WARNING", logger="perception"):
        run = run_listened(_config(tmp_path, f"images:{frames}", DEFAULT_CARD), topics=("status", "meta"))
    assert run.error is None
    warnings = [r.getMessage() for r in caplog.records if "synthetic-domain model" in r.getMessage()]
    assert len(warnings) == 1 and "is not a synthetic drive" in warnings[0]
    ready = [m for m in run.statuses() if m.state == "ready"]
    assert len(ready) == 1 and "synthetic-domain model" in ready[0].detail
    meta = next(m for m in run.received if isinstance(m, MetadataMessage))
    assert meta.metadata["model"]["domain"] == "synthetic"
    assert "synthetic-domain model" in meta.metadata["model"]["description"]


def test_the_synthetic_model_on_a_synthetic_drive_does_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with caplog.at_level("WARNING", logger="perception"):
        run = run_listened(_config(tmp_path, "synthetic:?seed=5&frames=2", DEFAULT_CARD), topics=("status",))
    assert run.error is None
    assert not [r for r in caplog.records if "synthetic-domain" in r.getMessage()]
    assert [m.detail for m in run.statuses() if m.state == "ready"] == [""]


def test_the_summary_names_the_subscribers_and_where_their_losses_show(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    frames = image_folder(tmp_path / "frames", 3)
    launch = write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/s.sock")
    assert main(["run", str(launch)]) == 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(r"published 3 frames to 0 frame subscribers \(most at once\), 0 dropped at the node's send "
                     r"queue; a slow subscriber loses frames in its own queue and sees them as seq gaps", line), line


def test_a_start_up_error_is_the_only_line_and_the_banner_comes_once_running(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    failed = run_cli("run", "--source", str(junk), "--endpoint", f"ipc://{tmp_path}/a.sock")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [failed.stderr.strip()], failed.stderr
    frames = image_folder(tmp_path / "frames", 2)
    launch = write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/b.sock")
    ok = run_cli("run", str(launch), "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert f"perception: images:{frames} -> tiny (onnxruntime) -> ipc://{tmp_path}/b.sock topic perception/cam0/" \
        in ok.stderr.splitlines()
