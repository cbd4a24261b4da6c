"""`perception fold MODEL.onnx --card CARD --out OUT.onnx [--post]`: preprocessing into the graph."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fold", help="fold preprocessing (and with --post, decoding) into a model's ONNX graph",
                       description="Wrap a model so it takes uint8 BGR frames (cast, color order, normalization "
                                   "and layout in the graph). --post also folds argmax, center NMS/top-k or "
                                   "YOLO NMS and mask assembly. Writes OUT.onnx and its card OUT.toml.")
    p.add_argument("model", type=Path, help="the model's ONNX file")
    p.add_argument("--card", type=Path, required=True, help="the model's card (.toml)")
    p.add_argument("--out", type=Path, required=True, help="folded ONNX to write; its card goes next to it")
    p.add_argument("--post", action="store_true", help="also fold the heavy part of decoding")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from perception.tools.fold import fold

    card = fold(args.model, args.card, args.out, post=args.post)
    print(f"wrote {args.out} and {card}")
    return 0
