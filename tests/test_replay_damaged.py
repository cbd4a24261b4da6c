"""Damaged bags (ROS 1, rosbag2 sqlite3 and mcap storage): typed errors or frames, never a hang."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from rosbags.rosbag2 import StoragePlugin

from perception.capture.source import open_source
from perception.record.errors import CorruptRecordingError, RecordingError
from tests.test_replay_sources import N_FRAMES, write_ros1_bag, write_rosbag2


def _count(uri: str) -> int:
    source = open_source(uri)
    source.open()
    n = 0
    try:
        while source.read() is not None:
            n += 1
    finally:
        source.close()
    return n


def _outcome(uri: str) -> int | RecordingError:
    result: list[int | BaseException] = []

    def target() -> None:
        try:
            result.append(_count(uri))
        except BaseException as exc:  # judged by the test thread below
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), f"replaying {uri} hung"
    outcome = result[0]
    if isinstance(outcome, BaseException) and not isinstance(outcome, RecordingError):
        raise AssertionError(f"untyped error {type(outcome).__name__}: {outcome}") from outcome
    return outcome


def _bag(kind: str, folder: Path) -> tuple[str, Path]:
    """(URI, file to damage)."""
    if kind == "ros1":
        bag = write_ros1_bag(folder / "d.bag", {"/c": "bgr8"})
        return f"rosbag:{bag}", bag
    storage = StoragePlugin.SQLITE3 if kind == "sqlite3" else StoragePlugin.MCAP
    bag = write_rosbag2(folder / "bag", {"/c": "bgr8"}, storage)
    return f"rosbag:{bag}", next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))


@pytest.mark.parametrize("kind", ["ros1", "sqlite3", "mcap"])
def test_truncated_and_flipped_bags(tmp_path: Path, kind: str) -> None:
    uri, target = _bag(kind, tmp_path)
    good = target.read_bytes()
    assert _outcome(uri) == N_FRAMES
    for fraction in (0.0, 0.05, 0.3, 0.5, 0.7, 0.95):
        target.write_bytes(good[: int(len(good) * fraction)])
        outcome = _outcome(uri)
        assert isinstance(outcome, RecordingError) or outcome <= N_FRAMES, fraction
        if isinstance(outcome, RecordingError):
            assert str(target.parent if kind != "ros1" else target) in str(outcome)
        if fraction == 0.0:
            assert isinstance(outcome, CorruptRecordingError)  # an empty file is not a bag
    for position in range(0, len(good), max(1, len(good) // 60)):
        damaged = bytearray(good)
        damaged[position] ^= 0x10
        target.write_bytes(bytes(damaged))
        outcome = _outcome(uri)  # bags carry no checksums: flipped pixels may pass, structure may not
        assert isinstance(outcome, RecordingError) or outcome <= N_FRAMES, position
