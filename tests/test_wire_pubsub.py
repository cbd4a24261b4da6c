"""Publisher and Subscriber over real ZeroMQ sockets on loopback (tcp 127.0.0.1 and ipc)."""

from __future__ import annotations

import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from perception.wire.codec import FrameEncoder, control_message
from perception.wire.errors import DecodeError, WireError
from perception.wire.messages import FrameMessage, MetadataMessage, StatsMessage, StatusMessage
from perception.wire.publisher import Publisher
from perception.wire.schema import Kind
from perception.wire.sequence import GapEvent, RestartEvent
from perception.wire.subscriber import Subscriber
from tests.wire_support import METADATA, first, frames, ipc_endpoint, result, scene, wait_subscribed

BIG = scene(1280, 720)  # 1.8 MB raw: fills socket buffers quickly
# Tests that publish bursts faster than libzmq's I/O thread drains them use a roomy HWM where
# drops are not the point (the node publishes one frame per period, not bursts).
ROOMY = 64


@pytest.fixture(params=["tcp", "ipc"])
def endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "tcp://127.0.0.1:*" if request.param == "tcp" else ipc_endpoint(tmp_path)


def test_frames_arrive_decoded_with_names_latency_and_contiguous_seq(endpoint: str) -> None:
    with Publisher(endpoint, sndhwm=ROOMY) as pub, Subscriber(pub.endpoint) as sub:
        pub.publish_metadata(METADATA)
        assert pub.wait_for_subscription(Kind.FRAME)
        sent = [pub.publish_frame(result(i, scene(shift=i))) for i in range(5)]
        got = list(frames(sub, count=5))
    assert [m.seq for m in got] == [s.seq for s in sent] == [0, 1, 2, 3, 4]
    assert all(m.epoch == pub.epoch and m.missed == 0 and not m.restarted for m in got)
    for i, msg in enumerate(got):
        np.testing.assert_array_equal(msg.id_map, scene(shift=i).id_map)
        assert msg.stamps["encode"] == sent[i].encode_ns and msg.stamps["publish"] == sent[i].publish_ns
        assert msg.stamps["capture"] < msg.stamps["encode"] <= msg.stamps["publish"] <= msg.receive_ns
        assert msg.capture_to_receive_ns is not None and msg.capture_to_receive_ns > msg.publish_to_receive_ns >= 0
    assert got[0].summary() == "car×2 road person"
    assert sub.totals.missed_frames == 0 and sub.totals.decode_errors == 0
    assert sub.last_receive_ns == got[-1].receive_ns
    silence = sub.silence_s()
    assert silence is not None and silence >= 0


def test_new_subscriber_gets_metadata_on_request(endpoint: str) -> None:
    with Publisher(endpoint) as pub:
        pub.publish_metadata(METADATA)  # nobody listens yet: this copy is lost
        with Subscriber(pub.endpoint, topics=("meta",)) as late:
            for _ in range(100):  # the node calls service() from its loop
                pub.service()
                msg = late.recv(timeout=0.05)
                if msg is not None:
                    break
            assert isinstance(msg, MetadataMessage)
            assert msg.class_names == {0: "road", 1: "person", 2: "car"}
            assert msg.seq >= 1  # seq 0 went out before the subscription
            assert late.metadata is msg


def test_status_heartbeat_carries_state_counters_detail(endpoint: str) -> None:
    with Publisher(endpoint) as pub, Subscriber(pub.endpoint, topics=("status",)) as sub:
        assert pub.wait_for_subscription(Kind.STATUS)
        pub.publish_status("source_lost", {"read": 10, "processed": 9, "dropped": {"stale": 1}}, "camera unplugged")
        msg = first(sub, StatusMessage)
    assert (msg.state, msg.detail, msg.seq) == ("source_lost", "camera unplugged", 0)
    assert msg.counters["dropped"] == {"stale": 1}


def test_gaps_are_counted_exactly(tmp_path: Path) -> None:
    """A publisher that skips sequence numbers on purpose: every hole is reported with its size."""
    context: zmq.Context = zmq.Context.instance()
    raw = context.socket(zmq.XPUB)
    raw.rcvtimeo = 10_000
    raw.bind(ipc_endpoint(tmp_path))
    gaps: list[GapEvent] = []
    encoder = FrameEncoder("cam0")
    try:
        with Subscriber(ipc_endpoint(tmp_path), topics=("frame",), on_gap=gaps.append) as sub:
            raw.recv()  # the subscription: no slow-joiner loss from here on
            for seq in [0, 1, 2, 5, 6, 10]:
                parts, _, _ = encoder.encode(result(seq), epoch=42, seq=seq, clock=time.monotonic_ns)
                raw.send_multipart(parts)
            got = list(frames(sub, count=6))
    finally:
        raw.close(linger=0)
    assert [m.missed for m in got] == [0, 0, 0, 2, 0, 3]
    assert [(g.expected_seq, g.seq, g.missed) for g in gaps] == [(3, 5, 2), (7, 10, 3)]
    assert (sub.totals.missed_frames, sub.totals.gaps, sub.totals.restarts) == (5, 2, 0)


def test_restart_is_detected_and_not_counted_as_gap(tmp_path: Path) -> None:
    uri = ipc_endpoint(tmp_path)
    restarts: list[RestartEvent] = []
    with Subscriber(uri, topics=("frame",), on_restart=restarts.append) as sub:
        with Publisher(uri, sndhwm=ROOMY) as first_run:
            assert first_run.wait_for_subscription()
            for i in range(3):
                first_run.publish_frame(result(i))
            before = list(frames(sub, count=3))
        with Publisher(uri) as second_run:  # the subscriber reconnects by itself
            wait_subscribed(second_run, sub)
            second_run.publish_frame(result(0))
            after = next(frames(sub, count=1))
    assert first_run.epoch != second_run.epoch
    assert [m.seq for m in before] == [0, 1, 2] and after.seq == 0
    assert after.restarted and after.missed == 0
    assert [(r.old_epoch, r.new_epoch) for r in restarts] == [(first_run.epoch, second_run.epoch)]
    assert (sub.totals.restarts, sub.totals.missed_frames) == (1, 0)


def test_latest_only_drains_and_keeps_the_newest_frame(tmp_path: Path) -> None:
    with (
        Publisher(ipc_endpoint(tmp_path), sndhwm=100) as pub,
        # no freshness budget: the half-second "busy" pause below is not the point here
        Subscriber(pub.endpoint, latest_only=True, rcvhwm=100, max_age_ms=None) as sub,
    ):
        assert pub.wait_for_subscription(Kind.STATUS)
        for i in range(20):
            pub.publish_frame(result(i))
        pub.publish_status("ready", {"read": 20})
        time.sleep(0.5)  # let everything reach the subscriber's queue while it is "busy"
        got: list[FrameMessage] = []
        for msg in sub.messages(timeout=2.0):
            if isinstance(msg, FrameMessage):
                got.append(msg)
                if msg.frame_index == 19:
                    break
    assert got[-1].frame_index == 19
    assert [m.frame_index for m in got] == sorted({m.frame_index for m in got})
    assert sub.totals.superseded >= 1
    assert len(got) + sub.totals.superseded + sub.totals.missed_frames == 20
    assert sub.totals.frames_received == len(got) and sub.totals.frames_accounted == 20


def test_publish_never_blocks_without_subscribers(endpoint: str) -> None:
    with Publisher(endpoint, compression="raw") as pub:
        for i in range(200):
            assert pub.publish_frame(result(i, BIG)).seq == i
        assert pub.sent == 200 and pub.dropped == 0


def publish_until_one_follows(pub: Publisher, sub: Subscriber, got: list[FrameMessage], first: int) -> int:
    """Drained subscriber: publish frames from `first` until one reaches `sub` (appended to got),
    so the hole before it shows; returns the index after the last frame published."""
    index = first
    while not got or got[-1].frame_index < first:
        assert index < first + 100, "the drained subscriber never received another frame"
        pub.publish_frame(result(index, BIG))
        got += list(frames(sub, timeout=0.2))
        index += 1
    return index


def test_stalled_subscriber_loses_frames_and_sees_the_gaps(endpoint: str) -> None:
    with (
        Publisher(endpoint, compression="raw", sndhwm=2) as pub,
        Subscriber(pub.endpoint, topics=("frame",), rcvhwm=1) as stalled,
    ):
        assert pub.wait_for_subscription()
        for i in range(300):  # the subscriber reads nothing meanwhile
            pub.publish_frame(result(i, BIG))
        got = list(frames(stalled, timeout=1.0))
        # on a busy machine the queue can hold only the first frames, the rest dropped after them
        index = publish_until_one_follows(pub, stalled, got, 300)
    assert 0 < len(got) < index
    seqs = [m.seq for m in got]
    assert stalled.totals.missed_frames == seqs[-1] - seqs[0] + 1 - len(got)
    assert stalled.totals.missed_frames > 0


def test_nodrop_mode_counts_every_refused_frame_at_the_publisher(tmp_path: Path) -> None:
    with (
        Publisher(ipc_endpoint(tmp_path), compression="raw", sndhwm=2, nodrop=True) as pub,
        Subscriber(pub.endpoint, topics=("frame",), rcvhwm=1) as stalled,
    ):
        assert pub.wait_for_subscription()
        for i in range(300):
            pub.publish_frame(result(i, BIG))
        assert pub.dropped > 0
        received = list(frames(stalled, timeout=0.5))
        index = publish_until_one_follows(pub, stalled, received, 300)
    assert stalled.totals.missed_frames == pub.dropped
    assert len(received) + pub.dropped == index


def test_cam0_subscriber_does_not_get_cam01(tmp_path: Path) -> None:
    context: zmq.Context = zmq.Context.instance()
    raw = context.socket(zmq.XPUB)
    raw.rcvtimeo = 10_000
    raw.bind(ipc_endpoint(tmp_path))
    try:
        with Subscriber(ipc_endpoint(tmp_path), "cam0", topics=("frame",)) as sub:
            assert raw.recv() == b"\x01perception/cam0/frame/"
            for index, camera in enumerate(["cam01", "cam0", "cam0x", "cam0"]):
                parts, _, _ = FrameEncoder(camera).encode(
                    result(index, camera=camera), epoch=5, seq=index, clock=time.monotonic_ns
                )
                raw.send_multipart(parts)
            got = list(frames(sub, timeout=0.5))
    finally:
        raw.close(linger=0)
    assert [(m.camera, m.frame_index) for m in got] == [("cam0", 1), ("cam0", 3)]


def test_corrupted_messages_are_counted_and_the_loop_survives(tmp_path: Path) -> None:
    context: zmq.Context = zmq.Context.instance()
    raw = context.socket(zmq.XPUB)
    raw.setsockopt(zmq.XPUB_VERBOSE, 1)  # pass up the second subscriber's subscriptions too
    raw.rcvtimeo = 10_000
    raw.bind(ipc_endpoint(tmp_path))
    errors: list[WireError] = []
    encoder = FrameEncoder("cam0")
    good, _, _ = encoder.encode(result(0), epoch=7, seq=0, clock=time.monotonic_ns)
    good = [bytes(p) for p in good]
    header = msgpack.unpackb(good[1])
    bad_messages = [
        [good[0], b"\x93garbage"],
        [good[0], msgpack.packb({**header, "schema": 99}), good[2]],
        [good[0], good[1], good[2][:10]],  # truncated zstd payload
        [good[0], good[1]],
    ]
    try:
        with Subscriber(ipc_endpoint(tmp_path), on_error=errors.append) as sub:
            raw.recv()
            for parts in bad_messages:
                raw.send_multipart(parts)
            raw.send_multipart(good)
            got = list(frames(sub, timeout=1.0))
            assert [m.frame_index for m in got] == [0]
            assert sub.totals.decode_errors == len(bad_messages) == len(errors)
            assert all(isinstance(e, DecodeError) for e in errors)
            with Subscriber(ipc_endpoint(tmp_path), raise_errors=True) as strict:
                while raw.recv() != b"\x01perception/cam0/frame/":
                    pass
                raw.send_multipart(bad_messages[0])
                with pytest.raises(DecodeError, match="not valid msgpack"):
                    strict.recv(timeout=2.0)
    finally:
        raw.close(linger=0)


def test_tap_sees_exactly_what_subscribers_receive(tmp_path: Path) -> None:
    tapped: list[tuple[bytes, list[bytes]]] = []
    with (
        Publisher(ipc_endpoint(tmp_path), sndhwm=ROOMY, tap=lambda t, parts: tapped.append((t, parts))) as pub,
        Subscriber(pub.endpoint) as sub,
    ):
        assert pub.wait_for_subscription(Kind.STATS)
        pub.publish_frame(result(0))
        pub.publish_stats({"fps": 1.0})
        msg = first(sub, FrameMessage)
    assert [t for t, _ in tapped] == [b"perception/cam0/frame/", b"perception/cam0/stats/"]
    topic, parts = tapped[0]
    assert parts[0] == topic and len(parts) == 3
    assert bytes(msg.payload) == parts[2]


def test_closed_publisher_and_wrong_camera_are_wire_errors(tmp_path: Path) -> None:
    pub = Publisher(ipc_endpoint(tmp_path))
    with pytest.raises(WireError, match="name every camera when creating the Publisher"):
        pub.publish_frame(result(0, camera="cam1"))
    pub.close()
    pub.close()
    with pytest.raises(WireError, match="is closed"):
        pub.publish_status("stopped", {})


def test_subscriber_with_no_topics_or_bad_endpoint() -> None:
    with pytest.raises(WireError, match="asks for no topics"):
        Subscriber(topics=())
    with pytest.raises(WireError, match="is not a ZeroMQ URI"):
        Subscriber("localhost:5560")
    with pytest.raises(WireError, match="unknown topic kind 'frames'"):
        Subscriber(topics=("frames",))


def test_control_message_helper_matches_publisher_output(tmp_path: Path) -> None:
    with Publisher(ipc_endpoint(tmp_path)) as pub, Subscriber(pub.endpoint, topics=("stats",)) as sub:
        assert pub.wait_for_subscription(Kind.STATS)
        pub.publish_stats({"fps": 12.5, "stages": {}})
        msg = first(sub, StatsMessage)
    expected = control_message(
        Kind.STATS,
        "cam0",
        epoch=pub.epoch,
        seq=0,
        publish_ns=msg.publish_ns,
        body={"stats": {"fps": 12.5, "stages": {}}},
    )
    assert msgpack.unpackb(expected[1]) == dict(msg.header)


def test_latest_only_keeps_arrival_order_so_stopped_never_overtakes_the_last_frame(tmp_path: Path) -> None:
    with (
        Publisher(ipc_endpoint(tmp_path), sndhwm=100) as pub,
        Subscriber(pub.endpoint, latest_only=True, rcvhwm=100, max_age_ms=None) as sub,
    ):
        assert pub.wait_for_subscription(Kind.STATUS)
        for i in range(5):
            pub.publish_frame(result(i))
        pub.publish_status("stopped", {"read": 5})
        time.sleep(0.5)  # everything is queued before the subscriber reads
        kinds = [type(msg).__name__ for msg in sub.messages(timeout=1.0, count=2)]
    assert kinds == ["FrameMessage", "StatusMessage"]
