"""`perception build-engine MODEL --precision fp32|fp16|int8`: precision variant, accuracy gate, TensorRT plan.

1. ONNX stage (any machine): FP16 by converting the graph, INT8 by symmetric Q/DQ calibration on
   frames through the card's preprocessing; the variant is scored with ONNX Runtime and refused
   above its PQ gate unless --force: with --frames, against the FP32 model's own outputs on those
   frames (any model); without, a synthetic-domain model (card domain = "synthetic") against
   ground truth on held-out synthetic drives.
2. TensorRT stage (where TensorRT and a GPU are present): the plan is built with a persisted timing
   cache and a progress display, and stored in the plan cache. Without TensorRT the command stops
   after the ONNX stage, says so and how to install it, and exits 0: the variant is ready to copy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perception.inference.engine import PRECISIONS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("build-engine",
                       help="make the FP16/INT8 ONNX variant, gate its accuracy, build the TensorRT plan",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="the model's FP32 ONNX (its card MODEL.toml next to it) or the card")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--calib", default="synth",
                   help="INT8 calibration frames: synth, synth:SEED, a drive .mcap or an image folder")
    p.add_argument("--calib-frames", type=int, default=64)
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax")
    p.add_argument("--frames", metavar="URI", default=None,
                   help="gate frames for your own model: a drive .mcap, a video or an image folder (any replay "
                        "source URI); the variant is judged against the FP32 model's outputs on them")
    p.add_argument("--eval-frames", type=int, default=40,
                   help="frames for the PQ gate (from --frames, or held-out synthetic drives)")
    p.add_argument("--force", action="store_true", help="accept a variant above its accuracy gate")
    p.add_argument("--cache-dir", type=Path, default=None, help="default: $XDG_CACHE_HOME/perception/engines")
    p.add_argument("--device", type=int, default=0, help="CUDA device for the TensorRT stage")
    p.add_argument("--workspace-mib", type=int, default=1024)
    p.add_argument("--opt-level", type=int, default=3, choices=range(6), help="TensorRT builder optimization level")
    p.add_argument("--max-batch", type=int, default=1,
                   help="a dynamic batch axis: build the plan for 1..N frames per call (a node with N cameras)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from perception.tools.build_engine import BuildRequest, build_engine

    request = BuildRequest(model=args.model, precision=args.precision, calib=args.calib,
                           calib_frames=args.calib_frames, calib_method=args.calib_method,
                           eval_frames=args.eval_frames, frames=args.frames, force=args.force, cache_dir=args.cache_dir,
                           device=args.device, workspace_mib=args.workspace_mib, opt_level=args.opt_level,
                           max_batch=args.max_batch)
    build_engine(request, say=print, warn=lambda line: print(line, file=sys.stderr))
    return 0
