"""`perception fleet run` on local worker processes: one engine per worker, the node's own bytes,
PQ against ground truth, bad drives, a dying worker, Ctrl-C and --resume (Ray: test_fleet_ray.py)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import signal
import subprocess
import sys
from pathlib import Path

from mcap.writer import Writer as McapWriter
from rosbags.rosbag1 import Writer as Bag1Writer
from rosbags.typesys import Stores, get_typestore

from perception.cli import main
from perception.fleet.drives import drive_name
from perception.record.drive import GROUND_TRUTH_TOPIC
from perception.record.image_channel import ImageChannel
from tests import fleet_support
from tests.onnx_models import scene
from tests.waiting import wait_until

DRIVES = [f"synthetic:?seed={s}&frames=3" for s in (41, 42, 43)]
NAMES = [drive_name(d) for d in DRIVES]
PROCESSES = ["--backend", "processes"]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _by_drive(out: Path) -> dict[str, dict]:
    return {d["drive"]: d for d in _summary(out)["drives"]}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _alone(tmp_path: Path, uri: str, name: str) -> Path:
    """The drive through a fresh node: `perception run --rate 0 --deterministic --record`."""
    out = tmp_path / f"{name}.mcap"
    assert main(["run", "--source", uri, "--rate", "0", "--deterministic", "--record", str(out), "--quiet",
                 "--endpoint", f"ipc://{tmp_path}/{name}.sock"]) == 0
    return out


def test_one_worker_opens_its_engine_once_and_writes_the_bytes_of_a_fresh_node(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["fleet", "run", *DRIVES, "--out", str(out), *PROCESSES]) == 0
    table = capsys.readouterr().out
    drives = _by_drive(out)
    workers = [drives[n]["worker"] for n in NAMES]
    assert len({w["pid"] for w in workers}) == 1  # one process served the three drives
    assert [w["drives"] for w in workers] == [1, 2, 3]
    assert [w["engines_opened"] for w in workers] == [1, 1, 1]
    for uri, name in zip(DRIVES, NAMES, strict=True):  # per-drive state starts anew: same bytes as alone
        assert (out / f"{name}.mcap").read_bytes() == _alone(tmp_path, uri, name).read_bytes()
    # synthetic drives carry ground truth: PQ per drive and over all frames, in the summary and the table
    scores = [drives[n]["score"] for n in NAMES]
    assert all(s["frames"] == 3 and 0 < s["pq"] <= 100 and s["tracking"]["num_unique_objects"] > 0 for s in scores)
    totals = _summary(out)["totals"]
    assert totals["score"]["frames"] == 9 and totals["score"]["drives"] == 3
    assert min(s["pq"] for s in scores) <= totals["score"]["pq"] <= max(s["pq"] for s in scores)
    assert f"{scores[0]['pq']:>5.1f} {scores[0]['sq']:>5.1f} {scores[0]['rq']:>5.1f}" in table
    assert "3 drives: 3 done, 0 failed; 9 frames" in table


def _no_image_mcap(path: Path) -> Path:
    with path.open("wb") as stream:
        writer = McapWriter(stream)
        writer.start(profile="", library="test")
        channel = writer.register_channel("/chatter", "json", 0)
        writer.add_message(channel, 1, b'{"hi": 1}', 1)
        writer.finish()
    return path


def _no_image_bag(path: Path) -> Path:
    ros1 = get_typestore(Stores.ROS1_NOETIC)
    with Bag1Writer(path) as writer:
        conn = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=ros1)
        writer.write(conn, 1, ros1.serialize_ros1(ros1.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
    return path


def test_bad_drives_fail_alone_with_their_error(tmp_path, capsys):
    corrupt = tmp_path / "broken.mcap"
    corrupt.write_bytes(b"\x89MCAP0\r\n" + b"not a recording" * 10)
    bad = [str(_no_image_mcap(tmp_path / "chatter.mcap")), str(_no_image_bag(tmp_path / "chatter_bag.bag")),
           str(corrupt)]
    out = tmp_path / "out"
    assert main(["fleet", "run", DRIVES[0], *bad, "--out", str(out), *PROCESSES, "--workers", "2"]) == 1
    drives = _by_drive(out)
    assert drives[NAMES[0]]["status"] == "done"
    for name in ("chatter", "chatter_bag"):
        assert drives[name]["status"] == "failed" and "no image topic" in drives[name]["error"]
        assert "/chatter" in drives[name]["error"]
    assert drives["broken"]["status"] == "failed" and "broken.mcap" in drives["broken"]["error"]
    assert not (out / "broken.mcap").exists() and not list(out.glob(".*.partial"))
    assert "4 drives: 1 done, 3 failed" in capsys.readouterr().out


def test_a_dead_worker_is_replaced_and_its_drive_tried_again(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPTION_SOURCES", fleet_support.PLUGIN)  # worker processes inherit it
    once, always = tmp_path / "once", tmp_path / "always"
    drives = [f"dies:{once}", f"dies:{always}?always=1", DRIVES[0]]
    out = tmp_path / "out"
    assert main(["fleet", "run", *drives, "--out", str(out), *PROCESSES, "--workers", "2"]) == 1
    results = _by_drive(out)
    retried, doomed = results[drive_name(drives[0])], results[drive_name(drives[1])]
    assert retried["status"] == "done" and retried["frames"] == fleet_support.FRAMES
    assert retried["worker"]["pid"] != int(once.read_text())  # the marker holds the pid of the one that died
    assert doomed["status"] == "failed"
    assert doomed["error"].startswith("its worker died 2 times")
    assert f"exit code {fleet_support.EXIT_CODE}" in doomed["error"]
    assert results[NAMES[0]]["status"] == "done"


def test_ctrl_c_then_resume_finishes_the_rest_and_keeps_what_was_complete(tmp_path):
    drives = [DRIVES[0], "synthetic:?seed=44&frames=20", "synthetic:?seed=45&frames=20"]
    names = [drive_name(d) for d in drives]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "perception", "fleet", "run", *drives, "--out", str(out), *PROCESSES]
    fleet = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until((out / f"{names[0]}.json").exists, timeout=120, what="the first drive's result")
        fleet.send_signal(signal.SIGINT)
        _, stderr = fleet.communicate(timeout=60)
    finally:
        if fleet.poll() is None:
            fleet.kill()
    assert fleet.returncode == 130, stderr
    interrupted = {d["drive"]: d for d in _summary(out)["drives"]}
    finished = {n: _sha(out / f"{n}.mcap") for n, d in interrupted.items() if d["status"] == "done"}
    assert names[0] in finished and len(finished) < len(drives)

    assert main(["fleet", "run", *drives, "--out", str(out), *PROCESSES, "--resume"]) == 0
    resumed = _by_drive(out)
    assert {n for n, d in resumed.items() if d.get("resumed")} == set(finished)  # skipped, checked by hash
    assert all(resumed[n]["status"] == "done" for n in names)
    assert {n: _sha(out / f"{n}.mcap") for n in finished} == finished
    assert all(resumed[n]["sha256"] == _sha(out / f"{n}.mcap") for n in names)
    assert not list(out.glob(".*.partial"))


def test_a_changed_recording_is_not_trusted_on_resume(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["fleet", "run", *DRIVES[:2], "--out", str(out), *PROCESSES]) == 0
    with (out / f"{NAMES[1]}.mcap").open("ab") as f:
        f.write(b"x")
    assert main(["fleet", "run", *DRIVES[:2], "--out", str(out), *PROCESSES, "--resume"]) == 0
    again = _by_drive(out)
    assert again[NAMES[0]].get("resumed") is True and "resumed" not in again[NAMES[1]]
    assert (out / f"{NAMES[1]}.mcap").read_bytes() == _alone(tmp_path, DRIVES[1], "again").read_bytes()


def test_an_existing_output_is_not_overwritten_without_resume(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{NAMES[0]}.mcap").write_bytes(b"keep")
    assert main(["fleet", "run", DRIVES[0], "--out", str(out), *PROCESSES]) == 2
    assert "--resume" in capsys.readouterr().err and (out / f"{NAMES[0]}.mcap").read_bytes() == b"keep"


def test_without_ray_the_command_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [fleet] extra were not installed
    assert main(["fleet", "run", DRIVES[0], "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert 'pip install "perception-node[fleet]"' in err and "--backend processes" in err
    # and a plain install does not bring Ray: it is only ever an extra
    ray = [r for r in importlib.metadata.requires("perception-node") or [] if r.startswith("ray")]
    assert ray and all("extra ==" in r for r in ray)


def test_damaged_ground_truth_is_noted_and_the_drive_still_done(tmp_path, capsys):
    drive = tmp_path / "damaged_truth.mcap"
    with drive.open("wb") as stream:
        writer = McapWriter(stream)
        writer.start(profile="ros2", library="test")
        images = ImageChannel(writer, "png")
        truth = writer.register_channel(GROUND_TRUTH_TOPIC, "msgpack", 0)
        for i in range(2):
            stamp = 1_000_000_000 + i * 100_000_000
            images.write(stamp, scene(), stamp)
            writer.add_message(truth, stamp, b"\xc1 not ground truth", stamp)
        writer.finish()
    out = tmp_path / "out"
    assert main(["fleet", "run", str(drive), "--out", str(out), *PROCESSES]) == 0
    result = _by_drive(out)["damaged_truth"]
    assert result["status"] == "done" and result["frames"] == 2
    error = result["score"]["error"]
    assert error.startswith("ground truth not scored:") and "/ground_truth" in error
    assert _summary(out)["totals"]["score"] is None
    assert "1 drives: 1 done, 0 failed" in capsys.readouterr().out
