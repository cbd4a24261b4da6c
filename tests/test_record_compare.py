"""`perception compare`: recordings made by the real Publisher tap + Recorder, compared through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perception.cli import main
from perception.core.frame import Frame
from perception.core.result import FrameResult
from perception.core.segmentation import Segmentation
from perception.record.errors import EmptyRecordingError
from perception.record.recorder import Recorder
from perception.tools.compare import compare_runs
from perception.wire.publisher import Publisher

CLASSES = ["road", "car", "person"]
H, W = 60, 80


def _seg(objects: list[tuple[int, slice, slice]]) -> Segmentation:
    """Objects as (class id, rows, cols), painted in order; road (class 0, stuff) below row 45."""
    id_map = np.zeros((H, W), np.uint16)
    id_map[45:, :] = 1
    classes, things = [0], [False]
    for n, (class_id, rows, cols) in enumerate(objects, start=2):
        id_map[rows, cols] = n
        classes.append(class_id)
        things.append(True)
    return Segmentation.from_id_map(id_map, np.array(classes), np.full(len(classes), 0.9), np.array(things))


def _record(path: Path, frames: dict[int, Segmentation], sock: str) -> Path:
    with Recorder(path) as recorder, Publisher(f"ipc://{sock}", "cam0", tap=recorder.record_message) as publisher:
        publisher.publish_metadata({"class_names": dict(enumerate(CLASSES))})
        for index, segmentation in frames.items():
            frame: Frame[None] = Frame(np.zeros((H, W, 3), np.uint8), index, 1_000 + index, 0)
            recorder.record_frame(frame)
            result = FrameResult("cam0", index, frame.stamp_ns, W, H, segmentation)
            publisher.publish_frame(result)
            recorder.record_result(result, CLASSES)
    return path


CAR = (1, slice(10, 30), slice(10, 30))  # 400 px
PERSON = (2, slice(5, 25), slice(50, 60))  # 200 px


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    a = {0: _seg([CAR, PERSON]), 1: _seg([CAR, PERSON]), 2: _seg([CAR]), 3: _seg([CAR])}
    b = {
        0: _seg([CAR, PERSON]),  # identical
        # car shifted 4 px: 320 px shared of 480: IoU 2/3 (A's void counts: A is a run, not labels)
        1: _seg([(1, slice(10, 30), slice(14, 34)), PERSON]),
        2: _seg([CAR, PERSON]),  # a person added
        # frame 3 missing in B, frame 4 only in B
        4: _seg([]),
    }
    return _record(tmp_path / "a.mcap", a, f"{tmp_path}/a.sock"), _record(tmp_path / "b.mcap", b, f"{tmp_path}/b.sock")


def test_per_frame_differences_and_pq(runs: tuple[Path, Path]) -> None:
    result = compare_runs(*runs)
    assert [(f.frame_index, f.identical) for f in result.frames] == [(0, True), (1, False), (2, False)]
    assert result.only_in_a == [("cam0", 3)]
    assert result.only_in_b == [("cam0", 4)]
    shifted = result.frames[1]
    assert shifted.added == () and shifted.removed == ()
    assert sorted(shifted.matched_ious) == pytest.approx([2 / 3, 1.0, 1.0])
    added = result.frames[2]
    assert [(r.class_name, r.class_id) for r in added.added] == [("person", 2)]
    assert added.pq == pytest.approx(2 / 2.5)
    # per class over the drive: car 3 TP (1 + 2/3 + 1), person 2 TP + 1 FP, road 3 TP
    assert result.classes[1].pq == pytest.approx((2 + 2 / 3) / 3)
    assert result.classes[2].pq == pytest.approx(2 / 2.5)
    assert result.classes[0].pq == pytest.approx(1.0)
    assert result.pq == pytest.approx(np.mean([1.0, (2 + 2 / 3) / 3, 2 / 2.5]))
    assert not result.identical


def test_cli_text_and_json(runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = runs
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "+person#" in out
    assert "compared 3 frames: 1 identical, 2 differ; only in A: 1, only in B: 1" in out
    assert main(["compare", str(a), str(b), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames_compared"] == 3
    assert report["classes"]["person"]["fp"] == 1
    assert main(["compare", str(a), str(b), "--min-pq", "0.99"]) == 1
    assert main(["compare", str(a), str(a)]) == 0
    assert "the runs are identical" in capsys.readouterr().out


def test_input_only_recording_is_refused_with_a_hint(tmp_path: Path, runs: tuple[Path, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    input_only = tmp_path / "input.mcap"
    with Recorder(input_only) as recorder:
        recorder.record_frame(Frame(np.zeros((H, W, 3), np.uint8), 0, 1, 0))
    with pytest.raises(EmptyRecordingError, match="perception run --record"):
        compare_runs(runs[0], input_only)
    assert main(["compare", str(runs[0]), str(input_only)]) == 2
    assert "holds no published frames" in capsys.readouterr().err


def _rescored(segmentation: Segmentation, scores: np.ndarray) -> Segmentation:
    s = segmentation.segments
    return Segmentation.from_id_map(segmentation.id_map, s.class_ids, scores, s.is_thing)


def test_each_difference_is_named_and_score_ulps_are_not_masks(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = _seg([CAR, PERSON])
    scores = base.segments.scores.astype(np.float32)
    one_ulp = np.nextafter(scores, np.float32(1.0))
    a = {0: base, 1: base, 2: base, 3: base}
    b = {
        0: _rescored(base, one_ulp),  # only scores moved, by one ulp
        1: _rescored(base, scores - np.float32(0.05)),  # scores moved beyond the tolerance
        2: _seg([CAR, (1, PERSON[1], PERSON[2])]),  # same pixels, the person is now a car
        3: _seg([(1, slice(10, 30), slice(11, 31)), PERSON]),  # the car moved a pixel
    }
    first = _record(tmp_path / "a.mcap", a, f"{tmp_path}/a.sock")
    second = _record(tmp_path / "b.mcap", b, f"{tmp_path}/b.sock")
    assert main(["compare", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    rows = {int(line.split()[1]): line for line in out.splitlines() if line.startswith("cam0")}
    assert 0 not in rows  # within tolerance: not listed as a difference
    assert "scores 0.05" in rows[1] and "pixels" not in rows[1]
    assert "classes 1" in rows[2] and "pixels" not in rows[2]
    assert "pixels 40" in rows[3] and "scores" not in rows[3]
    assert "masks differ" not in out
    assert "compared 4 frames: 0 identical, 1 with scores within 1e-05, 3 differ" in out
    assert main(["compare", str(first), str(second), "--all", "--score-tol", "0"]) == 0
    rows = {int(line.split()[1]): line for line in capsys.readouterr().out.splitlines() if line.startswith("cam0")}
    assert "scores 6e-08" in rows[0] and "pixels" not in rows[0]
