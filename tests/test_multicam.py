"""Several cameras in one node: per-camera streams on one socket, one engine, isolation, bad input."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path

import msgpack
import pytest
import zmq
from mcap.reader import make_reader

from perception.capture.thread import Backoff, SourceState
from perception.cli import build_parser
from perception.commands.run import build_config
from perception.core.errors import ConfigError
from perception.core.frame import monotonic_ns
from perception.runtime.config import NodeConfig, load_launch, override
from perception.runtime.node import Node, RunReport
from perception.runtime.parts import build_parts
from perception.wire.codec import decode_message
from perception.wire.messages import FrameMessage, Message, StatsMessage, StatusMessage
from tests.node_helpers import REPO, image_folder, published_messages, run_cli, video_file
from tests.onnx_models import tiny_panoptic


def _launch(folder: Path, cameras: dict[str, str], extra: str = "", batch: int | str = "batch") -> Path:
    card = tiny_panoptic(folder / "model", batch=batch)
    tables = "".join(f'[[camera]]\nname = "{name}"\nuri = "{uri}"\n\n' for name, uri in cameras.items())
    launch = folder / "multi.toml"
    launch.write_text(f'''[source]
rate = 0.0

[model]
card = "{card}"
threads = 1
warmup_runs = 1
{extra}

[publish]
endpoint = "ipc://{folder}/multi.sock"

{tables}''')
    return launch


class RawListener:
    """A plain ZeroMQ SUB on every camera's topics: it tells the streams apart by topic alone."""

    def __init__(self, endpoint: str, cameras: list[str]) -> None:
        self.endpoint, self.cameras = endpoint, set(cameras)
        self.received: list[tuple[bytes, Message]] = []
        self.subscribed = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()
        assert self.subscribed.wait(10)

    def _listen(self) -> None:
        context = zmq.Context()
        sub = context.socket(zmq.SUB)
        sub.rcvhwm = 100_000
        sub.connect(self.endpoint)
        sub.subscribe(b"perception/")
        self.subscribed.set()
        stopped: set[str] = set()
        deadline = time.monotonic() + 60
        while stopped != self.cameras and time.monotonic() < deadline:
            if not sub.poll(100):
                continue
            parts = sub.recv_multipart()
            message = decode_message(parts, receive_ns=monotonic_ns())
            self.received.append((parts[0], message))
            if isinstance(message, StatusMessage) and message.state == "stopped":
                stopped.add(message.camera)
        sub.close(linger=0)
        context.term()

    def join(self) -> None:
        self.thread.join(30)
        assert not self.thread.is_alive(), "the listener never heard every camera stop"

    def frames(self, camera: str) -> list[FrameMessage]:
        return [m for _, m in self.received if isinstance(m, FrameMessage) and m.camera == camera]

    def states(self, camera: str) -> list[str]:
        return [m.state for _, m in self.received if isinstance(m, StatusMessage) and m.camera == camera]


def _run(launch: Path, cameras: list[str], **publish: object) -> tuple[RunReport, RawListener]:
    config = override(load_launch(launch), "publish", wait_subscribers=1, sndhwm=10_000, **publish)
    listener = RawListener(config.publish.endpoint, cameras)
    report = Node(config, build_parts(config)).run()
    listener.join()
    return report, listener


def _start(config: NodeConfig) -> tuple[Node, threading.Thread, list[RunReport]]:
    """The node in a thread, reconnecting fast; its report lands in the list when run() returns."""
    parts = build_parts(config)
    parts.backoff = Backoff(first_s=0.01, max_s=0.05)
    node = Node(config, parts)
    result: list[RunReport] = []
    runner = threading.Thread(target=lambda: result.append(node.run()), daemon=True)
    runner.start()
    return node, runner, result


def _balanced(report: RunReport, camera: str) -> bool:
    c = report.cameras[camera]["counters"]
    return bool(c["read"] == c["processed"] + sum(c["dropped"].values()))


def test_three_cameras_publish_three_contiguous_streams_a_raw_subscriber_tells_apart(tmp_path: Path) -> None:
    video = video_file(tmp_path / "clip.avi", 4)
    folder = image_folder(tmp_path / "frames", 3)
    cameras = {"drive": "synthetic:?seed=3&frames=5&fps=10&width=128&height=96", "clip": str(video),
               "stills": f"images:{folder}"}
    report, listener = _run(_launch(tmp_path, cameras), list(cameras))

    for camera, n in {"drive": 5, "clip": 4, "stills": 3}.items():
        frames = listener.frames(camera)
        assert [f.seq for f in frames] == list(range(n)), camera  # its own contiguous sequence
        assert [f.frame_index for f in frames] == list(range(n)), camera
        assert report.cameras[camera]["counters"]["processed"] == n and _balanced(report, camera)
        states = listener.states(camera)
        assert "ready" in states and states[-1] == "stopped" and "source_lost" not in states
        stats = [m for _, m in listener.received if isinstance(m, StatsMessage) and m.camera == camera]
        assert stats and "batch" in stats[-1].stats["stages"]  # the batch wait is its own stage
    topics = {topic for topic, m in listener.received if isinstance(m, FrameMessage)}
    assert topics == {b"perception/drive/frame/", b"perception/clip/frame/", b"perception/stills/frame/"}
    assert report.published == 12 and report.counters["processed"] == 12


def test_a_lost_camera_reports_on_its_own_topic_while_the_others_publish_every_frame(tmp_path: Path) -> None:
    cameras = {"left": "fake:?fps=40&total=60", "gone": "fake:?fps=40&lose_after=5&fail_opens=1000000",
               "right": "fake:?fps=40&total=60"}
    config = override(load_launch(_launch(tmp_path, cameras, "batch_timeout_ms = 50")), "publish",
                      wait_subscribers=1, sndhwm=10_000)
    listener = RawListener(config.publish.endpoint, list(cameras))
    node, runner, result = _start(config)
    finite = [c for c in node.cameras if c.name != "gone"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(  # the two live cameras read their 60 frames and ended
            c.capture is not None and c.capture.state is SourceState.ENDED and c.capture.slot.depth == 0
            for c in finite):
        time.sleep(0.02)
    while time.monotonic() < deadline and sum(c.published + sum(c.counters.dropped.values()) for c in finite) < 120:
        time.sleep(0.02)  # ... and every frame they read was published or counted as dropped
    node.stop()
    runner.join(30)
    listener.join()
    report = result[0]

    assert "source_lost" in listener.states("gone")
    for camera in ("left", "right"):
        counters = report.cameras[camera]["counters"]
        assert counters["read"] == 60 and _balanced(report, camera)
        assert "source_lost" not in listener.states(camera)
        assert len(listener.frames(camera)) == counters["processed"] > 0
    first_loss = next(i for i, (_, m) in enumerate(listener.received)
                      if isinstance(m, StatusMessage) and m.camera == "gone" and m.state == "source_lost")
    after = [m for _, m in listener.received[first_loss:] if isinstance(m, FrameMessage)]
    # they kept publishing once it was lost (it may still publish what it read before the loss)
    assert {"left", "right"} <= {m.camera for m in after}
    assert sum(m.camera in ("left", "right") for m in after) > sum(m.camera == "gone" for m in after)
    assert len(listener.frames("gone")) <= 5 and _balanced(report, "gone")


def test_a_camera_sending_garbage_is_refused_frame_by_frame_and_the_others_go_on(tmp_path: Path) -> None:
    cameras = {"good": "fake:?live=0&total=8", "garbage": "fake:?live=0&total=8&width=0"}
    report, listener = _run(_launch(tmp_path, cameras), list(cameras))
    assert [f.frame_index for f in listener.frames("good")] == list(range(8))
    assert listener.frames("garbage") == []
    assert report.cameras["garbage"]["counters"]["dropped"] == {"error": 8} and _balanced(report, "garbage")
    assert "error" in listener.states("garbage") and "error" not in listener.states("good")


def test_cameras_are_served_round_robin_one_by_one_when_the_model_has_a_fixed_batch_of_one(tmp_path: Path) -> None:
    cameras = {"a": "fake:?live=0&total=6", "b": "fake:?live=0&total=6", "c": "fake:?live=0&total=6"}
    report, listener = _run(_launch(tmp_path, cameras, batch=1), list(cameras))
    order = [m.camera for _, m in listener.received if isinstance(m, FrameMessage)]
    assert sorted(order) == sorted(["a", "b", "c"] * 6)
    # while every camera has a frame waiting none is served twice before the others are served once
    for start in range(0, 12, 3):
        assert sorted(order[start:start + 3]) == ["a", "b", "c"], order
    assert all(_balanced(report, c) for c in cameras)


def test_a_camera_that_fails_at_start_is_reported_lost_and_the_others_run(tmp_path: Path) -> None:
    cameras = {"ok": "fake:?live=0&total=4", "absent": "fake:?absent=1"}
    config = override(load_launch(_launch(tmp_path, cameras)), "publish", wait_subscribers=1, sndhwm=10_000)
    listener = RawListener(config.publish.endpoint, list(cameras))
    node, runner, result = _start(config)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(listener.frames("ok")) < 4
                                           or "source_lost" not in listener.states("absent")):
        time.sleep(0.02)
    node.stop()
    runner.join(30)
    listener.join()
    assert [f.frame_index for f in listener.frames("ok")] == [0, 1, 2, 3]
    assert "source_lost" in listener.states("absent") and "ready" not in listener.states("absent")
    assert result[0].cameras["absent"]["counters"]["read"] == 0


def test_a_required_camera_that_fails_at_start_stops_the_node_with_one_line(tmp_path: Path) -> None:
    launch = _launch(tmp_path, {"ok": "fake:?live=0&total=4", "absent": "fake:?absent=1"})
    text = launch.read_text().replace('uri = "fake:?absent=1"\n', 'uri = "fake:?absent=1"\nrequired = true\n')
    launch.write_text(text)
    done = run_cli("run", str(launch), "--quiet")
    assert done.returncode == 2, done.stderr
    assert "camera fake is not there" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("cameras", "message"), [
    ('[[camera]]\nname = "front"\nuri = "a.mp4"\n\n[[camera]]\nname = "front"\nuri = "b.mp4"\n',
     "camera name 'front' is given to more than one camera"),
    ('[[camera]]\nname = "front/left"\nuri = "a.mp4"\n', "'front/left' cannot be used in a topic"),
    ('[[camera]]\nuri = "a.mp4"\n', "number 1 has no name"),
    ('[[camera]]\nname = "front"\n', "'front' has no uri"),
    ('[[camera]]\nname = "front"\nuri = "a.mp4"\nrate = -1\n', "rate = -1 is negative"),
    ('camera = "front"\n', "camera must be \\[\\[camera\\]\\] tables"),
])
def test_bad_camera_tables_are_one_clear_line_and_exit_2(tmp_path: Path, cameras: str, message: str) -> None:
    launch = tmp_path / "bad.toml"
    launch.write_text(cameras)
    with pytest.raises(ConfigError, match=message):
        load_launch(launch)
    done = run_cli("run", str(launch))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_batch_larger_than_the_models_fixed_batch_is_refused(tmp_path: Path) -> None:
    launch = _launch(tmp_path, {"a": "fake:?live=0&total=2", "b": "fake:?live=0&total=2"}, "batch = 2", batch=1)
    done = run_cli("run", str(launch), "--quiet")
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "batch = 2 is larger than the fixed batch 1" in last and "dynamic batch axis" in last


def test_the_command_line_names_cameras_with_name_equals_uri(tmp_path: Path) -> None:
    launch = _launch(tmp_path, {"front": "fake:?live=0&total=2"})
    launch.write_text(launch.read_text().replace('uri = "fake:?live=0&total=2"\n',
                                                 'uri = "fake:?live=0&total=2"\nmax_age_ms = 80\n'))
    args = build_parser().parse_args(["run", str(launch), "--source", "front=synthetic:?seed=7",
                                      "--source", "rear=images:dir"])
    config = build_config(args)
    assert [(c.name, c.uri, c.max_age_ms) for c in config.cameras] == [
        ("front", "synthetic:?seed=7", 80.0), ("rear", "images:dir", 0.0)]  # front keeps its table's options
    plain = build_config(build_parser().parse_args(["run", "--source", "synthetic:?seed=1&frames=2"]))
    assert [(c.name, c.uri) for c in plain.cameras] == [("cam0", "synthetic:?seed=1&frames=2")]
    with pytest.raises(ConfigError, match="names no camera, and the node has several"):
        build_config(build_parser().parse_args(["run", str(launch), "--source", "images:dir"]))
    with pytest.raises(ConfigError, match="more than one camera"):
        build_config(build_parser().parse_args(["run", "--source", "a=x.mp4", "--source", "a=y.mp4"]))


def test_a_batch_of_cameras_gives_each_the_scores_it_gets_alone(tmp_path: Path) -> None:
    """Batched (dynamic axis, one engine call) and one-by-one runs publish the same objects per camera."""
    cameras = {f"cam{i}": f"images:{image_folder(tmp_path / f'f{i}', 3, cars=i + 1)}" for i in range(3)}
    batched_launch = _launch(tmp_path / "batched", cameras, "batch = 3\nbatch_timeout_ms = 1000")
    batched, heard_batched = _run(batched_launch, list(cameras))
    alone, heard_alone = _run(_launch(tmp_path / "alone", cameras, batch=1), list(cameras))
    for camera in cameras:
        got = [[(o.class_name, o.area, round(o.score, 5)) for o in f.objects] for f in heard_batched.frames(camera)]
        want = [[(o.class_name, o.area, round(o.score, 5)) for o in f.objects] for f in heard_alone.frames(camera)]
        assert got == want and len(got) == 3
    by_batch: defaultdict[int, int] = defaultdict(int)
    for _, m in heard_batched.received:
        if isinstance(m, FrameMessage):
            by_batch[m.stamps["inference"]] += 1
    assert max(by_batch.values()) > 1  # some frames shared one engine call
    assert all(_balanced(batched, c) and _balanced(alone, c) for c in cameras)


def _recorded_run(folder: Path, cameras: dict[str, str], out: Path) -> RunReport:
    config = override(load_launch(_launch(folder, cameras)), "record", path=out, image_format="png")
    return Node.from_config(config).run()


def test_a_multi_camera_recording_has_a_channel_per_camera_and_replays_lock_step_byte_identical(
        tmp_path: Path) -> None:
    cameras = {"front": f"images:{image_folder(tmp_path / 'front', 5, cars=1)}",
               "rear": f"images:{image_folder(tmp_path / 'rear', 4, cars=3)}"}
    recorded = tmp_path / "run.mcap"
    _recorded_run(tmp_path / "live", cameras, recorded)
    with recorded.open("rb") as stream:
        summary = make_reader(stream).get_summary()
    assert summary is not None
    topics = {c.topic for c in summary.channels.values()}
    assert {"/front/image/compressed", "/rear/image/compressed", "/front/annotations", "/rear/annotations",
            "perception/front/frame/", "perception/rear/frame/"} <= topics

    # replay: one URI with both image topics feeds each camera its own frames, in recorded order
    args = build_parser().parse_args(["run", "--source",
                                      f"mcap:{recorded}?topics=/front/image/compressed,/rear/image/compressed"])
    replay = {c.name: c.uri for c in build_config(args).cameras}
    assert sorted(replay) == ["front", "rear"]
    first, second = tmp_path / "first.mcap", tmp_path / "second.mcap"
    report = _recorded_run(tmp_path / "a", replay, first)
    _recorded_run(tmp_path / "b", replay, second)
    assert {c: report.cameras[c]["counters"]["processed"] for c in replay} == {"front": 5, "rear": 4}
    for camera in replay:
        topic = f"perception/{camera}/frame/"
        original, again = published_messages(recorded, topic), published_messages(first, topic)
        assert again == published_messages(second, topic)  # lock-step: the same bytes every run
        assert [msgpack.unpackb(p[1])["frame_index"] for p in again] == list(range(len(original)))
        assert [msgpack.unpackb(p[1])["stamp_ns"] for p in again] == \
            [msgpack.unpackb(p[1])["stamp_ns"] for p in original]  # the recorded frames, in order


def test_a_segmenter_that_learns_one_cameras_background_refuses_several(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "frames", 2)
    done = run_cli("run", str(REPO / "launch" / "classic_motion.toml"), "--quiet", "--endpoint",
                   f"ipc://{tmp_path}/m.sock", "--source", f"a=images:{folder}", "--source", f"b=images:{folder}")
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "cannot serve 2 cameras" in last and "one node per camera" in last
