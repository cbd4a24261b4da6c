"""Damaged recordings: every truncation and bit flip ends in frames or a typed error, never a hang."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from perception.capture.source import open_source
from perception.core.errors import MissingDependencyError
from perception.core.frame import Frame
from perception.record.drive import read_drive
from perception.record.errors import CorruptRecordingError, RecordingError, TruncatedRecordingError
from perception.record.mcap_file import McapRecording
from perception.record.recorder import Recorder

N_FRAMES = 12


def _image(index: int) -> np.ndarray:
    # noise: incompressible, so the chunks (not the summary) make up most of the file
    return np.random.default_rng(index).integers(0, 256, (40, 50, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A finished recording of several chunks (raw frames, small chunks), plus published messages."""
    path = tmp_path_factory.mktemp("rec") / "good.mcap"
    with Recorder(path, image_format="raw", chunk_size=16 * 1024, metadata={"launch": {"a": "b"}}) as recorder:
        for i in range(N_FRAMES):
            recorder.record_frame(Frame(image=_image(i), index=i, stamp_ns=10_000 + i * 1000, capture_ns=0))
            recorder.record_message(b"perception/cam0/status/", [b"perception/cam0/status/", bytes([i]) * 50])
    return path.read_bytes()


def _outcome(read: Callable[[], list[int]]) -> list[int] | RecordingError:
    """Run a read in a thread so that a hang fails the test instead of blocking it."""
    result: list[list[int] | BaseException] = []

    def target() -> None:
        try:
            result.append(read())
        except BaseException as exc:  # handed to the test thread, which judges it
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "reading a damaged recording hung"
    outcome = result[0]
    if isinstance(outcome, BaseException):
        if not isinstance(outcome, RecordingError):
            raise AssertionError(f"untyped error {type(outcome).__name__}: {outcome}") from outcome
        return outcome
    return outcome


def _stamps_via_drive(path: Path, recover: bool = False) -> Callable[[], list[int]]:
    return lambda: [f.stamp_ns for f in read_drive(path, recover=recover)]


def _stamps_via_source(uri: str) -> Callable[[], list[int]]:
    def read() -> list[int]:
        source = open_source(uri)
        source.open()
        stamps = []
        try:
            while (item := source.read()) is not None:
                stamps.append(item[1])
        finally:
            source.close()
        return stamps

    return read


EXPECTED = [10_000 + i * 1000 for i in range(N_FRAMES)]


def test_intact_recording_reads_back(tmp_path: Path, recording: bytes) -> None:
    path = tmp_path / "ok.mcap"
    path.write_bytes(recording)
    assert _outcome(_stamps_via_drive(path)) == EXPECTED


def test_every_truncation_is_a_typed_error_or_a_prefix(tmp_path: Path, recording: bytes) -> None:
    path = tmp_path / "cut.mcap"
    lengths = sorted({*range(0, len(recording), max(1, len(recording) // 97)), 5, 8, 9, 30, len(recording) - 1})
    for length in lengths:
        path.write_bytes(recording[:length])
        strict = _outcome(_stamps_via_drive(path))
        if isinstance(strict, list):
            assert strict == EXPECTED[: len(strict)], length
        else:
            assert str(path) in str(strict)
        recovered = _outcome(_stamps_via_drive(path, recover=True))
        if isinstance(recovered, list):
            assert recovered == EXPECTED[: len(recovered)], length


def test_truncated_mid_record_names_the_offset_and_the_way_out(tmp_path: Path, recording: bytes) -> None:
    path = tmp_path / "cut.mcap"
    path.write_bytes(recording[: len(recording) // 2])
    error = _outcome(_stamps_via_source(f"mcap:{path}"))
    assert isinstance(error, TruncatedRecordingError)
    assert "ends inside a record at byte" in str(error)
    assert "recover=1" in str(error)
    recovered = _outcome(_stamps_via_source(f"mcap:{path}?recover=1"))
    assert isinstance(recovered, list)
    assert 0 < len(recovered) < N_FRAMES
    assert recovered == EXPECTED[: len(recovered)]


def test_every_bit_flip_is_a_typed_error_or_correct_frames(tmp_path: Path, recording: bytes) -> None:
    path = tmp_path / "flipped.mcap"
    positions = sorted({*range(0, len(recording), max(1, len(recording) // 151)), len(recording) - 1})
    errors = 0
    for position in positions:
        damaged = bytearray(recording)
        damaged[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(damaged))
        outcome = _outcome(_stamps_via_drive(path))
        if isinstance(outcome, list):
            # a flip the format does not protect (summary statistics, metadata text) changes no frame
            assert outcome == EXPECTED, position
        else:
            errors += 1
            assert str(path) in str(outcome)
    assert errors > len(positions) // 2  # most of the file is CRC-protected chunk data


def test_flip_in_image_data_is_caught_by_the_chunk_crc(tmp_path: Path, recording: bytes) -> None:
    path = tmp_path / "flipped.mcap"
    damaged = bytearray(recording)
    position = recording.index(_image(5).tobytes()[:256])  # frame 5's pixels
    damaged[position + 1000] ^= 0x10
    path.write_bytes(bytes(damaged))
    error = _outcome(_stamps_via_source(f"mcap:{path}"))
    assert isinstance(error, CorruptRecordingError)
    assert "crc" in str(error).lower()
    assert str(path) in str(error)


def test_missing_codec_is_a_dependency_error_not_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mcap.stream_reader
    from mcap.writer import CompressionType, Writer

    path = tmp_path / "lz4.mcap"
    with path.open("wb") as stream:
        writer = Writer(stream, compression=CompressionType.LZ4)
        writer.start()
        channel = writer.register_channel("/x", "json", 0)
        writer.add_message(channel, 1, b"{}", 1)
        writer.finish()
    monkeypatch.setattr(mcap.stream_reader, "lz4", None)  # as if the lz4 package were not installed
    with McapRecording(path) as recording, pytest.raises(MissingDependencyError, match="pip install lz4"):
        list(recording.messages())
