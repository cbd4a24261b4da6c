"""The node's parts: what the factory makes from a launch file, and a node built from given parts."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from perception.capture.source import open_source
from perception.cli import build_parser
from perception.commands.run import build_config
from perception.core.errors import ConfigError
from perception.inference.engine import ENGINES, Engine, EngineOptions
from perception.inference.onnxruntime import OrtEngine
from perception.models.card import load_card
from perception.runtime.config import load_launch
from perception.runtime.node import Node
from perception.runtime.parts import NodeParts, build_parts
from perception.runtime.pipeline import Pipeline
from perception.wire.messages import FrameMessage, StatusMessage
from perception.wire.publisher import Publisher
from perception.wire.subscriber import Subscriber
from tests.node_helpers import image_folder, write_launch

SEEN: list[EngineOptions] = []


def _probe_engine(model: Path, options: EngineOptions) -> Engine:
    """ONNX Runtime (in FP32, the CPU backend's only precision), noting the options the node handed over."""
    SEEN.append(options)
    return OrtEngine(model, dataclasses.replace(options, precision="fp32"))


ENGINES.register("options-probe", _probe_engine)


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def test_every_engine_option_goes_from_launch_file_and_cli_to_the_engine(tmp_path: Path) -> None:
    frames = image_folder(tmp_path / "frames", 2)
    launch = write_launch(tmp_path, f"images:{frames}", f"ipc://{tmp_path}/o.sock")
    launch.write_text(launch.read_text().replace(
        "[model]\n", '[model]\nengine = "options-probe"\ndevice = 1\ncache_dir = "plans"\n'))
    config = load_launch(launch)
    assert (config.model.device, config.model.cache_dir) == (1, tmp_path / "plans")

    config = build_config(_args(str(launch), "--device", "2", "--cache-dir", str(tmp_path / "elsewhere"),
                                "--threads", "1", "--spin", "--precision", "fp16"))
    parts = build_parts(config)
    SEEN.clear()
    report = Node(config, parts).run()
    assert report.counters["processed"] == 2
    assert [EngineOptions(threads=1, spin=True, device=2, precision="fp16", cache_dir=tmp_path / "elsewhere")] == SEEN


@pytest.mark.parametrize(("line", "message"), [
    ("device = -1", r"\[model\] device = -1 is negative"),
    ('cache_dir = "test.toml"', r"cache_dir = .*test.toml' exists and is not a folder"),
    ("device = \"gpu0\"", "expected a int"),
    ('precision = "fp8"', r"\[model\] precision = 'fp8' is not a precision: use one of fp32, fp16, int8"),
])
def test_bad_device_or_cache_dir_is_a_config_error(tmp_path: Path, line: str, message: str) -> None:
    launch = write_launch(tmp_path, "images:x", f"ipc://{tmp_path}/c.sock")
    launch.write_text(launch.read_text().replace("[model]\n", f"[model]\n{line}\n"))
    with pytest.raises(ConfigError, match=message):
        load_launch(launch)


def test_a_node_from_given_parts_publishes_with_them_and_closes_them(tmp_path: Path) -> None:
    config = load_launch(write_launch(tmp_path, "fake:?live=0&total=3", f"ipc://{tmp_path}/unused.sock"))
    endpoint = f"ipc://{tmp_path}/given.sock"
    pipeline = Pipeline.from_card(load_card(config.model.card))
    publisher = Publisher(endpoint, "cam0", sndhwm=100)
    parts = NodeParts(source=open_source("fake:?live=0&total=3"), open_pipeline=lambda: pipeline,
                      publisher=publisher)
    received = []
    with Subscriber(endpoint, "cam0", topics=("frame", "status")) as sub:
        assert publisher.wait_for_subscription("status", 10.0)
        report = Node(config, parts).run()
        while (msg := sub.recv(timeout=10.0)) is not None:
            received.append(msg)
            if isinstance(msg, StatusMessage) and msg.state == "stopped":
                break
    assert report.counters["processed"] == 3
    assert [m.frame_index for m in received if isinstance(m, FrameMessage)] == [0, 1, 2]
    states = [m.state for m in received if isinstance(m, StatusMessage)]
    assert states[0] == "starting" and states[-1] == "stopped"
    with Publisher(endpoint, "cam0"):  # the node released the endpoint it was given
        pass
