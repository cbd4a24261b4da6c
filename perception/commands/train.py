"""`perception train`: train the tiny panoptic model on synthetic scenes and export ONNX."""

from __future__ import annotations

import argparse
from typing import Any

from perception.train.cli import add_arguments, run


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "train", help="train the tiny panoptic model on synthetic scenes (needs the [train] extra)",
        description="Train the shipped tiny Panoptic-DeepLab on perception.synth scenes, checkpoint, "
                    "resume, and export ONNX checked against PyTorch with ONNX Runtime.")
    add_arguments(parser)
    parser.set_defaults(func=run)
