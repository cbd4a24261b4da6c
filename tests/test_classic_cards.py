"""Classic cards: parsed like any card, opened through the same pipeline; bad ones refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.cli import main
from perception.core.errors import FrameError
from perception.models.card import load_card
from perception.models.classic import available_methods
from perception.runtime.pipeline import Pipeline, PipelineSpec
from tests.classic_support import ENGINES

CLASSIC_CARDS = sorted(ENGINES.glob("classic-*.toml"))


@pytest.mark.parametrize("path", CLASSIC_CARDS, ids=lambda p: p.name)
def test_example_cards_open_without_onnx_and_segment_a_frame(path: Path) -> None:
    card = load_card(path)
    assert card.kind == "classic" and card.onnx is None and card.method in available_methods()
    with Pipeline.open(PipelineSpec(card=path)) as pipeline:
        pipeline.warm_up(2)
        frame = np.random.default_rng(0).integers(0, 255, (240, 400, 3), np.uint8)
        seg = pipeline.process(frame)
    assert seg.shape == (240, 400)
    assert int(seg.segments.areas.sum()) <= 240 * 400
    assert pipeline.card.to_dict()["method"] == card.method  # the metadata topic names the method


def _card(tmp_path: Path, method: str = "motion", params: str = "", classes: str = "") -> Path:
    path = tmp_path / "card.toml"
    path.write_text(f'''name = "bad"
kind = "classic"
method = "{method}"
[input]
width = 64
height = 48
[params]
{params}
{classes or """[[classes]]
id = 0
name = "static background"
thing = false
[[classes]]
id = 1
name = "moving"
thing = true"""}
''')
    return path


def _refused(capsys: pytest.CaptureFixture[str], card: Path, *needles: str) -> None:
    code = main(["eval", "--card", str(card), "--frames", "1", "--seed", "41"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err


def test_unknown_method_lists_the_valid_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(capsys, _card(tmp_path, method="optical_flow"), "unknown classic method 'optical_flow'",
             f"choose one of {', '.join(available_methods())}")


@pytest.mark.parametrize(("params", "needle"), [
    ("var_threshold = -3", "var_threshold = -3 is out of range"),
    ("close_kernel = 4", "close_kernel = 4 is even"),
    ("learning_rate = -0.5", "learning_rate = -0.5 is out of range"),
    ("moving_camera_fraction = 2.0", "moving_camera_fraction = 2 is out of range"),
    ("warmup_frames = 0", "warmup_frames = 0 is out of range"),
    ("model = \"vibe\"", "model = 'vibe' is not supported"),
    ("detect_shadows = \"yes\"", "detect_shadows = 'yes' is not a boolean"),
    ("history = 2.5", "history = 2.5 is not a whole number"),
    ("varthreshold = 16", "unknown keys ['varthreshold']"),
    ("default_class = \"static background\"", "must be a thing class"),
    ("[[params.rules]]\nclass = \"lorry\"", "is not a class of the card"),
])
def test_out_of_range_or_misspelt_params_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    params: str, needle: str) -> None:
    _refused(capsys, _card(tmp_path, params=params), needle)


@pytest.mark.parametrize(("text", "needle"), [
    ('name = "x"\nkind = "classic"\nmethod = "motion"\nonnx = "m.onnx"\n[input]\nwidth = 8\nheight = 8\n'
     '[[classes]]\nid = 0\nname = "a"\nthing = false\n', "unknown keys ['onnx']"),
    ('name = "x"\nkind = "classic"\nmethod = "motion"\n[input]\nwidth = 8\nheight = 8\nlayout = "NCHW"\n'
     '[[classes]]\nid = 0\nname = "a"\nthing = false\n', "classic methods read NHWC"),
    ('name = "x"\nkind = "handmade"\n', "kind = 'handmade'"),
])
def test_malformed_classic_cards_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                             needle: str) -> None:
    path = tmp_path / "card.toml"
    path.write_text(text)
    _refused(capsys, path, needle)


def test_a_classic_card_has_no_model_file_for_onnx_tools(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build-engine", str(ENGINES / "classic-motion.toml")])
    err = capsys.readouterr().err
    assert code == 2 and "is a classic card" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("frame", [np.zeros((120, 160), np.uint8), np.zeros((120, 160, 3), np.uint16),
                                   np.zeros((120, 160, 4), np.uint8)], ids=["grey", "16-bit", "bgra"])
@pytest.mark.parametrize("path", CLASSIC_CARDS, ids=lambda p: p.name)
def test_grey_16_bit_or_4_channel_frames_are_refused_with_the_conversion(path: Path, frame: np.ndarray) -> None:
    with Pipeline.open(PipelineSpec(card=path)) as pipeline, pytest.raises(FrameError) as caught:
        pipeline.process(frame)
    assert caught.value.exit_code == 2
    assert "3-channel 8-bit BGR" in str(caught.value) and "cv2." in str(caught.value)
