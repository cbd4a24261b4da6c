"""The documented example cards load and build their decoders."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.models.card import load_card
from perception.models.decoders import make_decoder

EXAMPLES = Path(__file__).resolve().parents[1] / "engines" / "examples"


@pytest.mark.parametrize(("name", "decoder"), [("yolo-seg.example.toml", "yolo_seg"),
                                               ("semantic.example.toml", "semantic")])
def test_example_card_loads_and_builds_its_decoder(name: str, decoder: str) -> None:
    card = load_card(EXAMPLES / name)
    assert card.decoder == decoder
    assert type(make_decoder(card)).__name__.lower().startswith(decoder.replace("_", ""))
