"""`perception inspect MODEL.onnx`: inputs, outputs, metadata, fitting decoder, card skeleton."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perception.models.errors import ModelCardError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show an ONNX model's tensors and a model card skeleton for it",
                       description="Print the inputs, outputs and metadata of an ONNX model, the decoders that "
                                   "can read its outputs, and a model card skeleton (TOML) to edit.")
    p.add_argument("model", type=Path, help="ONNX file")
    p.add_argument("--card-out", type=Path, help="also write the card skeleton to this .toml file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from perception.tools.inspect import card_skeleton, fitting_decoders, read_model, render_card, report

    if args.card_out and args.card_out.exists():  # checked before the report, so the error is the one line
        raise ModelCardError(f"{args.card_out} already exists", "choose another --card-out or remove it")
    info = read_model(args.model)
    sys.stdout.write(report(info, skeleton=not args.card_out))  # the card goes to its file, not twice
    if args.card_out:
        fits = fitting_decoders(info)
        if not fits:
            raise ModelCardError(f"no decoder fits the outputs of {args.model}, so there is no card to write",
                                 "see the expected output shapes above")
        args.card_out.write_text(render_card(card_skeleton(info, fits[0]),
                                             header="written by perception inspect: check every value"),
                                 encoding="utf-8")
        print(f"card skeleton written to {args.card_out}")
    return 0
