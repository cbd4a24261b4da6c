"""Every shipped launch file parses and points at files that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.cli import main
from perception.inference.engine import available_engines
from perception.runtime.config import load_launch
from tests.node_helpers import image_folder, write_launch

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
    launch.write_text('[source]\nuri = "camera:0"\n[model]\ncard = "cards/m.toml"\n[record]\npath = "out/run.mcap"\n')
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = load_launch(launch)
    assert config.model.card == (tmp_path / "conf" / "cards" / "m.toml").resolve()
    assert config.record.path == (work / "out" / "run.mcap").resolve()


# each common setup: the source it opens (without touching a device) and how it runs
SETUPS = {
    "usb_camera.toml": ("CameraSource", True, "onnxruntime"),
    "jetson_csi.toml": ("GStreamerSource", True, "tensorrt"),
    "rtsp_camera.toml": ("StreamSource", True, "onnxruntime"),
    "bag_replay.toml": ("RosbagSource", False, "onnxruntime"),
    "robot_tensorrt.toml": ("CameraSource", True, "tensorrt"),
    "replay.toml": ("McapSource", False, "onnxruntime"),
    "default.toml": ("SyntheticSource", False, "onnxruntime"),
    "classic_motion.toml": ("VideoFileSource", False, "onnxruntime"),  # the card is classic: no engine opens
}


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_each_setup_opens_its_kind_of_source(name: str) -> None:
    from perception.capture.source import open_source
    from perception.ops.listen import parse_listen

    source_class, live, engine = SETUPS[name]
    config = load_launch(LAUNCH / name)
    source = open_source(config.source.uri)  # constructs and validates; open() would touch the device
    assert type(source).__name__ == source_class
    assert source.live is live
    assert config.model.engine == engine
    if live:
        assert config.source.max_age_ms > 0, "a live setup drops stale frames instead of lagging"
        assert parse_listen(config.ops.metrics, "--metrics").is_loopback
    assert {p.name for p in LAUNCH.glob("*.toml")} == set(SETUPS)


def test_systemd_unit_is_type_notify_with_a_watchdog_and_runs_a_shipped_launch_file() -> None:
    import configparser
    import shlex

    from perception.cli import build_parser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(LAUNCH / "perception.service")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) > 0
    assert service["RestartPreventExitStatus"] == "2"
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/perception")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.log_json
    load_launch(LAUNCH / args.launch.name)


def test_a_launch_file_without_a_source_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only the embedded default replays the demo drive; any other launch file names its source."""
    launch = write_launch(tmp_path, "unused", f"ipc://{tmp_path}/n.sock")
    text = launch.read_text()
    launch.write_text(text[text.index("[model]"):])  # the same file without its [source] section
    assert main(["run", str(launch), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names no source" in err[0] and "--source" in err[0]
    frames = image_folder(tmp_path / "frames", 2)
    assert main(["run", str(launch), "--quiet", "--source", f"images:{frames}", "--rate", "0"]) == 0


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_precision_on_the_cpu_engine_is_refused_with_the_reason(
        tmp_path: Path, precision: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The CPU engine runs FP32 only; it says so instead of running FP32 under an int8 launch file."""
    frames = image_folder(tmp_path / "frames", 1)
    launch = write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/n.sock")
    launch.write_text(launch.read_text().replace("threads = 1\n", f'threads = 1\nprecision = "{precision}"\n'))
    assert main(["run", str(launch), "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # the error alone
    assert f"precision '{precision}' is not run by the onnxruntime (CPU) engine" in line
    assert "saturate" in line and 'precision = "fp32"' in line and "tensorrt" in line
