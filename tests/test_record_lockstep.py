"""A deterministic recording (`--deterministic`): the process's time stays out of the file, the
live socket keeps it; the command line refuses what cannot be deterministic."""

from __future__ import annotations

from pathlib import Path

import msgpack
from mcap.reader import make_reader

from perception.cli import main
from perception.record.recorder import Recorder
from perception.wire.messages import FrameMessage
from perception.wire.publisher import Publisher, drive_epoch
from perception.wire.subscriber import Subscriber
from tests.wire_support import METADATA, first, ipc_endpoint, result, wait_subscribed


def _recorded(path: Path) -> list[tuple[str, int, int, dict]]:
    """(topic, log time, publish time, header) of each published message in the recording."""
    out = []
    with path.open("rb") as stream:
        for _schema, channel, message in make_reader(stream).iter_messages():
            if channel.message_encoding == "msgpack":
                parts = msgpack.unpackb(message.data)
                out.append((channel.topic, message.log_time, message.publish_time, msgpack.unpackb(parts[1])))
    return out


def _publish(tmp_path: Path, name: str, deterministic: bool) -> tuple[Path, FrameMessage]:
    path = tmp_path / f"{name}.mcap"
    with Recorder(path, deterministic=deterministic) as recorder, \
            Publisher(ipc_endpoint(tmp_path, name), tap=recorder.record_message, epoch=drive_epoch("drive")) as pub, \
            Subscriber(pub.endpoint, max_age_ms=None) as sub:
        wait_subscribed(pub, sub)
        pub.publish_metadata(METADATA)
        pub.publish_status("ready", {"read": 0})
        pub.publish_frame(result(0))
        pub.publish_metadata(METADATA)  # sent again unchanged, as to a subscriber that just joined
        pub.publish_stats({"fps": 10.0})
        pub.publish_frame(result(1))
        live = first(sub, FrameMessage)
    return path, live


def test_the_recording_keeps_results_and_drops_process_time_while_the_socket_keeps_it(tmp_path):
    path, live = _publish(tmp_path, "a", deterministic=True)
    assert live.publish_ns > 0 and "capture" in live.stamps and live.epoch == drive_epoch("drive")
    recorded = _recorded(path)
    assert [t for t, *_ in recorded] == ["perception/cam0/meta/", "perception/cam0/frame/", "perception/cam0/frame/"]
    frames = [h for t, _, _, h in recorded if t.endswith("/frame/")]
    assert [h["publish_ns"] for h in frames] == [0, 0] and [h["stamps"] for h in frames] == [{}, {}]
    assert [h["stamp_ns"] for h in frames] == [result(0).stamp_ns, result(1).stamp_ns]
    # log and publish time are the drive's: the first frame's stamp for the metadata sent before it
    assert [(log, publish) for _, log, publish, _ in recorded] == [(result(0).stamp_ns,) * 2, (result(0).stamp_ns,) * 2,
                                                                   (result(1).stamp_ns,) * 2]
    # the same messages published again by another process give the same bytes
    again, _ = _publish(tmp_path, "b", deterministic=True)
    assert again.read_bytes() == path.read_bytes()


def test_an_ordinary_recording_keeps_every_message_as_published(tmp_path):
    path, _ = _publish(tmp_path, "plain", deterministic=False)
    recorded = _recorded(path)
    assert len(recorded) == 6
    assert all(h["publish_ns"] > 0 for *_, h in recorded)


def test_deterministic_needs_lock_step_replay(tmp_path, capsys):
    base = ["run", "--deterministic", "--quiet", "--endpoint", f"ipc://{tmp_path}/n.sock",
            "--record", str(tmp_path / "out.mcap")]
    assert main([*base, "--source", "synthetic:?seed=1&frames=2", "--rate", "1"]) == 2
    assert "--rate 0" in capsys.readouterr().err
    assert main([*base, "--source", "fake:?total=2", "--rate", "0"]) == 2  # a camera (tests/fakes.py)
    assert "camera cam0 is live" in capsys.readouterr().err
    assert not (tmp_path / "out.mcap").exists()
