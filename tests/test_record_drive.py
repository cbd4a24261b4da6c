"""Drive files: what DriveWriter writes, read_drive gives back (frames, stamps, lossless ground truth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader

from perception.record.drive import DriveWriter, GroundTruth, GtSegment, read_drive
from perception.record.errors import EmptyRecordingError, RecordingWriteError, TruncatedRecordingError


def _frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _truth(index: int, height: int = 48, width: int = 64) -> GroundTruth:
    id_map = np.zeros((height, width), np.uint16)
    id_map[index % 10 : 20, 5:30] = 1
    id_map[30:, :] = 2
    id_map[0:4, 0:4] = 700
    return GroundTruth(id_map, (GtSegment(1, 11, 100 + index, True), GtSegment(2, 0, 0, False),
                                GtSegment(700, 11, 5, True)))


@pytest.mark.parametrize("image_format", ["png", "raw"])
def test_lossless_formats_round_trip_pixels_stamps_and_truth(tmp_path: Path, image_format: str) -> None:
    path = tmp_path / "drive.mcap"
    stamps = [1_700_000_000_123_456_789 + i * 33_333_333 for i in range(12)]
    with DriveWriter(path, image_format=image_format, metadata={"synth": {"seed": "3"}}) as writer:
        for i, stamp in enumerate(stamps):
            writer.write_frame(stamp, _frame(i), _truth(i) if i % 3 else None)
    frames = list(read_drive(path))
    assert [f.stamp_ns for f in frames] == stamps
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.bgr, _frame(i))
        if i % 3:
            assert frame.ground_truth is not None
            np.testing.assert_array_equal(frame.ground_truth.id_map, _truth(i).id_map)
            assert frame.ground_truth.id_map.dtype == np.uint16
            assert frame.ground_truth.segments == _truth(i).segments
        else:
            assert frame.ground_truth is None
    images_only = list(read_drive(path, ground_truth=False))  # a replay: the same frames, truth left undecoded
    assert [f.stamp_ns for f in images_only] == stamps
    assert all(f.ground_truth is None for f in images_only)
    for i, frame in enumerate(images_only):
        np.testing.assert_array_equal(frame.bgr, _frame(i))


def test_jpeg_drive_is_close_and_opens_with_the_mcap_reader(tmp_path: Path) -> None:
    path = tmp_path / "drive.mcap"
    smooth = np.zeros((48, 64, 3), np.uint8)
    smooth[:, :, 1] = np.linspace(0, 255, 64, dtype=np.uint8)
    with DriveWriter(path, metadata={"synth": {"seed": "3", "scene": "street"}}) as writer:
        writer.write_frame(5, smooth)
        writer.write_frame(6, smooth, _truth(0))
    frames = list(read_drive(path))
    assert len(frames) == 2
    assert np.abs(frames[0].bgr.astype(int) - smooth).mean() < 3
    with path.open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None
        schemas = {summary.schemas[c.schema_id].name for c in summary.channels.values() if c.schema_id}
        assert schemas == {"sensor_msgs/msg/CompressedImage"}
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
    assert metadata["synth"] == {"seed": "3", "scene": "street"}
    assert metadata["perception.drive"]["image_topic"] == "/camera/image/compressed"


def test_writer_is_atomic_and_discards_on_error(tmp_path: Path) -> None:
    path = tmp_path / "drive.mcap"

    def generate_and_fail() -> None:
        with DriveWriter(path) as writer:
            writer.write_frame(1, _frame(0))
            assert not path.exists()  # only the temporary file exists while writing
            raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError, match="generator failed"):
        generate_and_fail()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_are_refused_with_typed_errors(tmp_path: Path) -> None:
    with DriveWriter(tmp_path / "d.mcap") as writer:
        with pytest.raises(RecordingWriteError, match="HxWx3 uint8"):
            writer.write_frame(1, np.zeros((4, 4), np.uint8))
        writer.write_frame(10, _frame(0))
        with pytest.raises(RecordingWriteError, match="must increase"):
            writer.write_frame(10, _frame(1))
        with pytest.raises(RecordingWriteError, match="does not match"):
            writer.write_frame(20, _frame(1), _truth(0, height=10, width=10))
        with pytest.raises(RecordingWriteError, match="int32 seconds"):
            writer.write_frame(2**31 * 1_000_000_000, _frame(1))
    with pytest.raises(RecordingWriteError, match="unique"):
        GroundTruth(np.zeros((2, 2), np.uint16), (GtSegment(1, 0, 0, False), GtSegment(1, 2, 0, False)))
    with pytest.raises(RecordingWriteError, match="image format"):
        DriveWriter(tmp_path / "x.mcap", image_format="webp")


def test_empty_and_cut_off_drives_give_typed_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mcap"
    with DriveWriter(empty):
        pass
    with pytest.raises(EmptyRecordingError, match=r"empty\.mcap"):
        list(read_drive(empty))
    full = tmp_path / "full.mcap"
    with DriveWriter(full, image_format="raw") as writer:
        for i in range(5):
            writer.write_frame(i + 1, _frame(i))
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(TruncatedRecordingError, match=r"cut\.mcap.*recover=1"):
        list(read_drive(cut))


@pytest.mark.parametrize("image_format", ["jpeg", "raw"])
def test_drives_are_valid_ros2_for_an_independent_reader(tmp_path: Path, image_format: str) -> None:
    """rosbags (its own MCAP storage reader, CDR deserializer and .msg parser) reads our drives."""
    typesys = pytest.importorskip("rosbags.typesys")
    rosbag2 = pytest.importorskip("rosbags.rosbag2")
    path = tmp_path / "drive.mcap"
    stamps = [7, 1_000_000_007, 2_500_000_000]
    with DriveWriter(path, image_format=image_format) as writer:
        for i, stamp in enumerate(stamps):
            writer.write_frame(stamp, _frame(i))
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    with rosbag2.Reader(path) as reader:
        (connection,) = [c for c in reader.connections if c.topic.startswith("/camera/")]
        assert set(typesys.get_types_from_msg(connection.msgdef.data, connection.msgtype)) >= {
            connection.msgtype, "std_msgs/msg/Header", "builtin_interfaces/msg/Time"}
        messages = [store.deserialize_cdr(data, connection.msgtype)
                    for _c, _t, data in reader.messages([connection])]
    got = [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in messages]
    assert got == stamps
    if image_format == "raw":
        assert messages[1].encoding == "bgr8"
        assert messages[1].step == 64 * 3
        np.testing.assert_array_equal(messages[1].data.reshape(48, 64, 3), _frame(1))
    else:
        assert messages[1].format == "jpeg"
