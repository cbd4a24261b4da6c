"""The one plugin registry: names on a miss, protocol checks, and third-party entry points.

The entry-point test installs a real distribution (a dist-info folder and a module on
sys.path), the way pip would, and finds its plugins through importlib.metadata.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perception.capture.errors import SourceError
from perception.capture.source import SOURCES, open_source
from perception.core.registry import ENTRY_POINT_GROUPS, Registry
from perception.core.segmentation import Segmentation, Segments
from perception.inference.engine import ENGINES
from perception.inference.errors import EngineError
from perception.models.classic.base import CLASSIC_METHODS
from perception.models.decoders.base import DECODERS
from perception.runtime.config import NodeConfig, TrackingConfig
from perception.runtime.pipeline import Pipeline, PipelineSpec
from perception.tracking.base import TRACKERS, Tracker, TrackerError, make_tracker
from perception.wire.errors import WireError
from perception.wire.payload import CODECS, IdMapDecoder, IdMapEncoder
from tests.onnx_models import scene, tiny_panoptic

REGISTRIES: list[Registry[Any]] = [SOURCES, ENGINES, DECODERS, TRACKERS, CODECS, CLASSIC_METHODS]

PLUGIN_MODULE = '''
import bz2

from perception.core.segmentation import Segmentation


class CountingTracker:
    """Numbers things in order of appearance, frame after frame."""

    def __init__(self, iou_threshold: float, max_missed: int) -> None:
        self.frames = 0
        self.reports = None

    def update(self, segmentation: Segmentation, stamp_ns: int) -> Segmentation:
        self.frames += 1
        return segmentation


class Bz2Codec:
    def compress(self, data):
        return bz2.compress(data)

    def decompress(self, data, nbytes):
        return bz2.decompress(data)


class NotATracker:
    def __init__(self, **settings: object) -> None:
        pass


NOT_A_FACTORY = 42
'''

ENTRY_POINTS = '''
[perception.sources]
plugin-images = perception.capture.images:ImageFolderSource

[perception.engines]
plugin-ort = perception.inference.onnxruntime:OrtEngine

[perception.decoders]
plugin-panoptic = perception.models.decoders.panoptic_deeplab:PanopticDeepLabDecoder

[perception.trackers]
counting = demo_plugins:CountingTracker
broken = demo_plugins:NotATracker
constant = demo_plugins:NOT_A_FACTORY
absent = demo_plugins_gone:Tracker

[perception.codecs]
bz2 = demo_plugins:Bz2Codec
'''


@pytest.fixture
def installed_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A third-party distribution on sys.path, as `pip install perception-demo-plugins` leaves it."""
    site = tmp_path / "site"
    dist = site / "perception_demo_plugins-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: perception-demo-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    (site / "demo_plugins.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(site))
    for registry in REGISTRIES:
        registry.refresh()  # earlier tests read the entry points before this package was there
    yield site
    for registry in REGISTRIES:
        registry.refresh()


def test_every_registry_finds_its_entry_points(installed_plugins: Path) -> None:
    assert {"plugin-images", "plugin-ort", "plugin-panoptic", "counting", "bz2"} <= {
        name for registry in REGISTRIES for name in registry.names()}
    assert {r.group for r in REGISTRIES} == set(ENTRY_POINT_GROUPS)


def test_plugins_from_entry_points_run_a_frame_and_cross_the_wire(installed_plugins: Path, tmp_path: Path) -> None:
    card = tiny_panoptic(tmp_path)
    plugin_card = card.with_name("plugin.toml")
    plugin_card.write_text(card.read_text().replace('decoder = "panoptic_deeplab"', 'decoder = "plugin-panoptic"'))
    assert 'decoder = "plugin-panoptic"' in plugin_card.read_text()
    with Pipeline.open(PipelineSpec(plugin_card, engine="plugin-ort")) as pipe:
        segmentation = pipe.process(scene(64, 48))
    tracker = make_tracker("counting", {"iou_threshold": 0.3, "max_missed": 5})
    assert isinstance(tracker, Tracker)
    assert tracker.update(segmentation, 0) is segmentation
    assert "car" in {pipe.card.class_names[c] for c in segmentation.segments.class_ids.tolist()}

    spec, frame = IdMapEncoder("bz2").encode(segmentation.id_map)
    assert spec.compression == "bz2"
    assert np.array_equal(IdMapDecoder().decode(spec, bytes(frame)), segmentation.id_map)

    assert TrackingConfig(tracker="counting").tracker == "counting"
    assert type(open_source("plugin-images:" + str(tmp_path / "*.png"))).__name__ == "ImageFolderSource"


def test_a_plugin_that_breaks_its_protocol_is_refused_by_name(installed_plugins: Path) -> None:
    with pytest.raises(TrackerError, match="'broken' built a NotATracker, which is not a Tracker: give it reports"):
        make_tracker("broken")
    with pytest.raises(TrackerError, match="'constant' points at 'demo_plugins:NOT_A_FACTORY', which is a int"):
        TRACKERS.load("constant")
    with pytest.raises(TrackerError, match=r"'absent' points at 'demo_plugins_gone:Tracker', which cannot be loaded"):
        TRACKERS.load("absent")


def test_an_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(TrackerError, match=r"unknown tracker 'bytetrak': choose one of .*bytetrack, iou, none"):
        make_tracker("bytetrak")
    with pytest.raises(TrackerError, match=r"unknown tracker 'kalman' in \[tracking\] tracker"):
        NodeConfig(tracking=TrackingConfig(tracker="kalman"))
    with pytest.raises(EngineError, match="unknown engine 'warp': choose one of onnxruntime, onnxruntime-gpu"):
        ENGINES.load("warp")
    with pytest.raises(WireError, match="unknown compression 'gzip': choose one of lz4, raw, zstd"):
        IdMapEncoder("gzip")


def test_the_none_tracker_leaves_instance_ids_at_zero() -> None:
    segmentation = Segmentation(np.zeros((4, 6), np.uint16), Segments.empty())
    assert make_tracker("none").update(segmentation, 0) is segmentation


def test_registered_factories_and_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    registry: Registry[Tracker] = Registry("tracker", Tracker, TrackerError, {}, group="perception.trackers",
                                           variable="PERCEPTION_TEST_TRACKERS")
    registry.register("counting", lambda **_: object())  # type: ignore[arg-type]  # mypy refuses it too
    with pytest.raises(TrackerError, match="built a object, which is not a Tracker"):
        registry.create("counting")
    monkeypatch.setenv("PERCEPTION_TEST_TRACKERS", "iou=perception.tracking.iou:IouTracker")
    assert type(registry.create("iou")).__name__ == "IouTracker"
    monkeypatch.setenv("PERCEPTION_TEST_TRACKERS", "iou")
    with pytest.raises(TrackerError, match="PERCEPTION_TEST_TRACKERS entry 'iou' is malformed"):
        registry.names()
    monkeypatch.setenv("PERCEPTION_SOURCES", "thermal=no_such_module:Thermal")
    with pytest.raises(SourceError, match="fix the PERCEPTION_SOURCES entry"):
        open_source("thermal:0")
