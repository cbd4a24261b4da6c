"""`perception fleet run` on a local Ray (2 CPUs, a small object store): the issue's "done when".

A folder with a synthetic drive (with ground truth), a `--record`ed run, a rosbag2 and a ROS 1 bag
replays into four recordings, PQ for the synthetic one; 1 and 2 Ray workers write the same bytes,
and so does `perception run --rate 0 --deterministic --record` for each drive alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rosbags.rosbag2 import StoragePlugin

from perception.cli import main
from tests.test_replay_sources import write_ros1_bag, write_rosbag2

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, object_store_memory=100 << 20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _drives(folder: Path) -> dict[str, str]:
    """drive name -> the URI `perception run --source` takes for it."""
    folder.mkdir()
    assert main(["synth", "--out", str(folder / "synth.mcap"), "--seed", "41", "--frames", "4"]) == 0
    assert main(["run", "--source", "synthetic:?seed=42&frames=3", "--rate", "0", "--quiet", "--record",
                 str(folder / "recorded.mcap"), "--endpoint", f"ipc://{folder}/rec.sock"]) == 0
    (folder / "rec.sock").unlink(missing_ok=True)
    write_rosbag2(folder / "bag2", {"/cam/image": "bgr8"}, StoragePlugin.SQLITE3)
    write_ros1_bag(folder / "drive1.bag", {"/cam/image": "jpeg"})
    return {"synth": str(folder / "synth.mcap"), "recorded": str(folder / "recorded.mcap"),
            "bag2": str(folder / "bag2"), "drive1": str(folder / "drive1.bag")}


def test_a_folder_of_four_kinds_of_drive_gives_the_same_bytes_on_one_or_two_ray_workers(tmp_path, ray_local,
                                                                                        capsys):
    drives = _drives(tmp_path / "drives")
    one, two = tmp_path / "one", tmp_path / "two"
    for out, workers in ((one, "1"), (two, "2")):
        assert main(["fleet", "run", str(tmp_path / "drives"), "--out", str(out), "--workers", workers,
                     "--cpus-per-worker", "0.5"]) == 0
    table = capsys.readouterr().out
    assert "4 drives: 4 done, 0 failed" in table
    summary = json.loads((one / "summary.json").read_text())
    results = {d["drive"]: d for d in summary["drives"]}
    assert sorted(results) == sorted(drives)
    for name, uri in drives.items():
        assert results[name]["status"] == "done" and results[name]["frames"] > 0
        assert (one / f"{name}.mcap").read_bytes() == (two / f"{name}.mcap").read_bytes(), name
        alone = tmp_path / f"alone-{name}.mcap"
        assert main(["run", "--source", uri, "--rate", "0", "--deterministic", "--record", str(alone), "--quiet",
                     "--endpoint", f"ipc://{tmp_path}/{name}.sock"]) == 0
        assert alone.read_bytes() == (one / f"{name}.mcap").read_bytes(), name
    # ground truth only in the synthetic drive: PQ there, and the totals are its own
    assert results["synth"]["score"]["frames"] == 4 and results["synth"]["score"]["pq"] > 0
    assert all(results[n]["score"] is None for n in ("recorded", "bag2", "drive1"))
    assert summary["totals"]["score"]["pq"] == results["synth"]["score"]["pq"]
    # one actor served all four drives of the one-worker run, with one engine
    served = [r["worker"] for r in results.values()]
    assert len({w["pid"] for w in served}) == 1 and {w["engines_opened"] for w in served} == {1}
    assert main(["fleet", "compare", str(one), str(two), "--json"]) == 0
    assert [r["identical"] for r in json.loads(capsys.readouterr().out)] == [True] * 4
