"""A subscriber written only from docs/protocol.md decodes a live Publisher's messages correctly."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from perception.core.segmentation import Segmentation
from perception.tracking.bytetrack import ByteTracker
from perception.wire.publisher import Publisher
from perception.wire.schema import Kind
from tests import protocol_reader
from tests.wire_support import METADATA, ipc_endpoint, result, scene, wide_scene


def test_reader_imports_nothing_from_perception() -> None:
    tree = ast.parse(Path(protocol_reader.__file__).read_text(encoding="utf-8"))
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in modules if m.split(".")[0] in ("perception", "tests")}
    assert {m.split(".")[0] for m in modules} <= {
        "__future__",
        "dataclasses",
        "typing",
        "msgpack",
        "numpy",
        "zmq",
        "zstandard",
    }


def test_live_frames_decode_to_what_was_published(tmp_path: Path) -> None:
    tracker = ByteTracker()
    published = [tracker.update(scene(shift=i), 1_700_000_000_000_000_000 + i * 33_333_333) for i in range(4)]
    published += [wide_scene()]
    hidden = scene(shift=4)  # the second car goes out of sight: the tracker still predicts it
    published += [tracker.update(Segmentation.from_id_map(np.where(hidden.id_map == 3, 0, hidden.id_map),
                                                          np.array([0, 2, 2, 1]), np.array([1.0, 0.9, 0.75, 0.5]),
                                                          np.array([False, True, True, True])),
                                 1_700_000_000_000_000_000 + 4 * 33_333_333)]
    reader = protocol_reader.Reader(ipc_endpoint(tmp_path))
    try:
        with Publisher(ipc_endpoint(tmp_path), sndhwm=64) as pub:
            assert pub.wait_for_subscription(Kind.META)  # answers with the metadata below
            pub.publish_metadata(METADATA)
            assert pub.wait_for_subscription(Kind.FRAME)
            results = [result(i, seg) for i, seg in enumerate(published)]
            for res in results:
                pub.publish_frame(res)
            decoded = [reader.next_frame(5000) for _ in results]
    finally:
        reader.close()
    assert reader.names == {0: "road", 1: "person", 2: "car"}
    assert reader.missed == 0
    for got, res in zip(decoded, results, strict=True):
        assert got is not None
        seg = res.segmentation
        np.testing.assert_array_equal(got.id_map, seg.id_map)
        assert got.header["frame_index"] == res.frame_index and got.header["stamp_ns"] == res.stamp_ns
        assert [o["id"] for o in got.objects] == seg.segments.ids.tolist()
        assert [o["class_id"] for o in got.objects] == seg.segments.class_ids.tolist()
        assert [o["bbox"] for o in got.objects] == seg.segments.bboxes.tolist()
        assert [o["area"] for o in got.objects] == seg.segments.areas.tolist()
        np.testing.assert_allclose([o["score"] for o in got.objects], seg.segments.scores)
        for obj in got.objects:
            np.testing.assert_array_equal(protocol_reader.mask(got, obj["id"]), seg.id_map == obj["id"])
        assert got.header["stamps"]["capture"] == res.stamps["capture"]
        predicted = seg.predicted
        want_ids = [] if predicted is None else predicted.instance_ids.tolist()
        assert [p["instance_id"] for p in got.predicted] == want_ids
        if predicted is not None and len(predicted):
            np.testing.assert_allclose([p["bbox"] for p in got.predicted], predicted.bboxes)
            np.testing.assert_allclose([p["velocity"] for p in got.predicted], predicted.velocity)
            np.testing.assert_allclose([p["lost_s"] for p in got.predicted], predicted.lost_s)
        tracks = seg.segments.tracks
        if tracks is None:
            assert {o["track_state"] for o in got.objects} == {"none"}
            continue
        assert [o["track_state"] for o in got.objects] == tracks.state_names()
        assert [o["instance_id"] for o in got.objects] == seg.segments.instance_ids.tolist()
        assert [o["track_hits"] for o in got.objects] == tracks.hits.tolist()
        assert [o["first_seen_ns"] for o in got.objects] == tracks.first_seen_ns.tolist()
        assert [o["velocity_valid"] for o in got.objects] == tracks.velocity_valid.tolist()
        np.testing.assert_allclose([o["track_age_s"] for o in got.objects], tracks.age_s)
        np.testing.assert_allclose([o["centroid"] for o in got.objects], tracks.centroid)
        np.testing.assert_allclose([o["velocity"] for o in got.objects], tracks.velocity)
    last_tracked = decoded[3]
    assert last_tracked is not None
    moving = [o for o in last_tracked.objects if o["velocity_valid"]]
    assert moving and all(o["velocity"][0] > 0 for o in moving)  # the things move right
    last = decoded[-1]
    assert last is not None and len(last.predicted) == 1  # the hidden car, predicted, not a segment
    assert last.predicted[0]["instance_id"] not in [o["instance_id"] for o in last.objects]
    first_frame = decoded[0]
    assert first_frame is not None
    assert [o["class_name"] for o in first_frame.objects] == ["road", "car", "car", "person"]
