"""`perception fleet`: tiny synthetic drives replayed through the real node on a local Ray and on processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perception.cli import main
from perception.tools.compare import compare_runs

pytest.importorskip("ray")

DRIVES = ["synthetic:?seed=41&frames=3", "synthetic:?seed=42&frames=3"]
NAMES = ["synthetic_seed_41_frames_3", "synthetic_seed_42_frames_3"]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, object_store_memory=80 << 20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_outputs_match_the_node_for_any_worker_count_and_backend(tmp_path, ray_local, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["fleet", "run", *DRIVES, "--out", str(one), "--workers", "1", "--cpus-per-worker", "0.5"]) == 0
    assert main(["fleet", "run", *DRIVES, "--out", str(two), "--workers", "2", "--cpus-per-worker", "0.5",
                 "--backend", "processes"]) == 0
    alone = tmp_path / "alone.mcap"
    assert main(["run", "--source", DRIVES[0], "--rate", "0", "--record", str(alone), "--quiet",
                 "--endpoint", f"ipc://{tmp_path}/alone.sock"]) == 0
    table = capsys.readouterr().out
    assert "2 drives: 2 done, 0 failed; 6 frames" in table
    for name in NAMES:
        assert compare_runs(one / f"{name}.mcap", two / f"{name}.mcap").identical
    assert compare_runs(alone, one / f"{NAMES[0]}.mcap").identical
    totals = _summary(one)["totals"]
    assert totals["frames"] == 6 and totals["objects"] == sum(d["objects"] for d in _summary(two)["drives"]) > 0
    assert main(["fleet", "compare", str(one), str(two), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["identical"] for r in rows] == [True, True]


def test_a_corrupt_drive_fails_alone_and_resume_redoes_only_what_is_not_complete(tmp_path, ray_local, capsys):
    corrupt = tmp_path / "broken.mcap"
    corrupt.write_bytes(b"\x89MCAP0\r\n" + b"not a recording" * 10)
    out = tmp_path / "out"
    assert main(["fleet", "run", *DRIVES, str(corrupt), "--out", str(out), "--cpus-per-worker", "0.5"]) == 1
    drives = {d["drive"]: d for d in _summary(out)["drives"]}
    assert drives["broken"]["status"] == "failed" and drives["broken"]["error"]
    assert [drives[n]["status"] for n in NAMES] == ["done", "done"]
    capsys.readouterr()
    # a finished recording changed after the run is not trusted: it runs again; the other is skipped
    with (out / f"{NAMES[1]}.mcap").open("ab") as f:
        f.write(b"x")
    assert main(["fleet", "run", *DRIVES, "--out", str(out), "--resume", "--cpus-per-worker", "0.5"]) == 0
    again = {d["drive"]: d for d in _summary(out)["drives"]}
    assert again[NAMES[0]].get("resumed") is True and "resumed" not in again[NAMES[1]]
    assert compare_runs(out / f"{NAMES[1]}.mcap", out / f"{NAMES[0]}.mcap").frames


def test_an_existing_output_is_not_overwritten_without_resume(tmp_path, ray_local, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{NAMES[0]}.mcap").write_bytes(b"keep")
    assert main(["fleet", "run", DRIVES[0], "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err and (out / f"{NAMES[0]}.mcap").read_bytes() == b"keep"
