"""Model cards are type-checked and must name only classes the model produces (issue 21, item 4).
Each mistake is one line naming the card file, the key and the fix, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.cli import main
from tests.node_helpers import image_folder
from tests.onnx_models import tiny_panoptic


def _run_card(tmp_path: Path, card: Path, capsys: pytest.CaptureFixture[str]) -> str:
    frames = image_folder(tmp_path / "frames", 1)
    assert main(["run", "--card", str(card), "--source", f"images:{frames}", "--rate", "0", "--quiet",
                 "--endpoint", f"ipc://{tmp_path}/n.sock"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # the error alone
    return line


def test_a_quoted_thing_flag_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tiny_panoptic(tmp_path / "model")
    text = card.read_text()
    card.write_text(text.replace('name = "car"\nthing = true', 'name = "car"\nthing = "false"'))
    line = _run_card(tmp_path, card, capsys)
    assert str(card) in line and "thing = 'false' is a str, expected true or false" in line
    assert "no quotes" in line


def test_a_quoted_class_id_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tiny_panoptic(tmp_path / "model")
    card.write_text(card.read_text().replace("id = 5\n", 'id = "5"\n'))
    line = _run_card(tmp_path, card, capsys)
    assert str(card) in line and "[[classes]] id = '5'" in line and "integer" in line


def test_a_quoted_decoder_boolean_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tiny_panoptic(tmp_path / "model")
    card.write_text(card.read_text().replace("[decoder_params]\n", '[decoder_params]\nclass_aware_grouping = "no"\n'))
    line = _run_card(tmp_path, card, capsys)
    assert str(card) in line and "decoder_params class_aware_grouping = 'no' is a str" in line
    assert "write class_aware_grouping = false or true" in line


def test_a_class_the_model_does_not_produce_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tiny_panoptic(tmp_path / "model")  # 8 semantic channels: class ids 0..7
    card.write_text(card.read_text() + '[[classes]]\nid = 9\nname = "bus"\nthing = true\n')
    line = _run_card(tmp_path, card, capsys)
    assert str(card) in line and "[[classes]] id 9 is not a class of tiny.onnx" in line
    assert "0..7" in line and "perception inspect" in line
