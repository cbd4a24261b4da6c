"""`perception eval`: table and --json over rendered held-out drives and drive files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perception.cli import main


def test_eval_json_on_rendered_drives(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--seed", "11", "--frames", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == 3 and out["model"] == "panoptic-tiny"
    assert set(out["per_class"]) == {"road", "sidewalk", "vegetation", "sky", "building", "car", "person",
                                     "traffic_sign"}
    for which in ("all", "things", "stuff"):
        assert 0.0 <= out[which]["pq"] <= 100.0
    assert out["all"]["pq"] > 30.0  # a trained model, not noise


def test_eval_table_on_a_drive_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drive = tmp_path / "held_out.mcap"
    assert main(["synth", "--out", str(drive), "--seed", "12", "--frames", "3"]) == 0
    capsys.readouterr()
    assert main(["eval", "--drive", str(drive)]) == 0
    table = capsys.readouterr().out
    # "things (N)": N counts the thing classes present in truth or prediction of these 3 frames
    for word in ("PQ", "things (", "stuff (5)", "traffic_sign", "semantic mIoU", "3 frames"):
        assert word in table


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", "1000001"], "training seed"),
    (["--drive", "/nonexistent/drive.mcap"], "does not exist"),
    (["--frames", "0"], "--frames"),
    (["--card", "/nonexistent/card.toml"], "does not exist"),
])
def test_eval_user_mistakes_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", *args]) == 2
    assert message in capsys.readouterr().err


def test_eval_refuses_a_drive_without_ground_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from perception.record.drive import DriveWriter

    path = tmp_path / "plain.mcap"
    with DriveWriter(path, image_format="png") as writer:
        writer.write_frame(1, np.zeros((192, 320, 3), np.uint8))
    assert main(["eval", "--drive", str(path)]) == 2
    assert "no ground truth" in capsys.readouterr().err


def test_eval_on_decoder_tuning_seeds_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--seed", "21", "--frames", "1", "--json"]) == 0
    captured = capsys.readouterr()
    assert "seeds [21] are decoder-tuning drives" in captured.err and "11-18" in captured.err
    assert "tuning drives" in json.loads(captured.out)["data"]
    assert main(["eval", "--seed", "11", "--frames", "1", "--json"]) == 0
    assert "tuning" not in capsys.readouterr().err
