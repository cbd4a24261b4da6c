"""`perception build-engine MODEL --precision fp32|fp16|int8`: precision variant, accuracy gate, TensorRT plan.

1. ONNX stage (any machine): FP16 by converting the graph, INT8 by symmetric Q/DQ calibration on
   frames through the card's preprocessing; the variant is scored with ONNX Runtime against FP32
   on a held-out synthetic drive and refused above its PQ gate unless --force.
2. TensorRT stage (where TensorRT and a GPU are present): the plan is built with a persisted timing
   cache and a progress display, and stored in the plan cache. Without TensorRT the command stops
   after the ONNX stage, says so and how to install it, and exits 0: the variant is ready to copy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from perception.core.errors import MissingDependencyError
from perception.inference.engine import EngineOptions
from perception.inference.errors import EngineError
from perception.inference.plan_cache import atomic_write, default_cache_dir
from perception.inference.tensorrt import PRECISIONS, variant_path
from perception.models.card import ModelCard, load_card
from perception.tools.precision import GATE_LIMITS, GateResult, PrecisionError, enforce, gate


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
    p.add_argument("--eval-frames", type=int, default=40, help="held-out synthetic frames for the PQ gate")
    p.add_argument("--force", action="store_true", help="accept a variant above its accuracy gate")
    p.add_argument("--cache-dir", type=Path, default=None, help="default: $XDG_CACHE_HOME/perception/engines")
    p.add_argument("--device", type=int, default=0, help="CUDA device for the TensorRT stage")
    p.add_argument("--workspace-mib", type=int, default=1024)
    p.add_argument("--opt-level", type=int, default=3, choices=range(6), help="TensorRT builder optimization level")
    p.set_defaults(func=build_engine)


def resolve(model: Path) -> tuple[Path, ModelCard | None]:
    """(FP32 ONNX, its card if there is one) from either path."""
    if model.suffix == ".toml":
        card = load_card(model)
        return card.onnx, card
    if not model.is_file():
        raise EngineError(f"model {model} does not exist", "pass the FP32 .onnx or its .toml card")
    card_path = model.with_suffix(".toml")
    return model, load_card(card_path) if card_path.is_file() else None


def build_engine(args: argparse.Namespace) -> int:
    onnx_path, card = resolve(args.model)
    cache_root = args.cache_dir or default_cache_dir()
    if args.precision != "fp32":
        if card is None:
            raise PrecisionError(f"no model card next to {onnx_path}",
                                 "FP16/INT8 need the card (preprocessing, decoder) to calibrate and score the variant")
        target = variant_path(onnx_path, args.precision, cache_root)
        result = make_variant(onnx_path, card, target, args)
        print(f"ONNX stage: {args.precision} variant {target}" + ("" if result else " (not scored)"))
    else:
        target = onnx_path
        print(f"ONNX stage: FP32, {onnx_path} as is")
    return tensorrt_stage(onnx_path, args)


def make_variant(onnx_path: Path, card: ModelCard, target: Path, args: argparse.Namespace) -> GateResult | None:
    """Write the variant next to its final name, gate it, then move it into place."""
    from perception.tools.precision import convert_fp16, load_onnx, quantize_int8

    onnx = load_onnx()  # the install hint, not a traceback, where the optional package is missing

    target.parent.mkdir(parents=True, exist_ok=True)
    candidate = target.with_name(f".{target.name}.{os.getpid()}.candidate.onnx")
    try:
        if args.precision == "fp16":
            onnx.save(convert_fp16(onnx.load(str(onnx_path))), str(candidate))
        else:
            from perception.tools.calibration import calibration_reader

            used = quantize_int8(onnx_path, candidate, calibration_reader(card, args.calib, args.calib_frames),
                                 method=args.calib_method)
            print(f"INT8: calibrated on {used} frames from {args.calib} ({args.calib_method})")
        result = _gate(onnx_path, card, candidate, args)
        os.replace(candidate, target)
    finally:
        candidate.unlink(missing_ok=True)
    if result is not None:
        record = {"precision": result.precision, "baseline_pq": result.baseline_pq, "variant_pq": result.variant_pq,
                  "limit": result.limit, "passed": result.passed, "forced": bool(args.force and not result.passed),
                  "source": str(onnx_path), "calib": args.calib if args.precision == "int8" else None}
        atomic_write(target.with_suffix(".gate.json"), json.dumps(record, indent=2).encode())
    return result


def _gate(onnx_path: Path, card: ModelCard, candidate: Path, args: argparse.Namespace) -> GateResult | None:
    try:
        from perception.tools.accuracy import pq_evaluator

        evaluate = pq_evaluator(card, args.eval_frames)
    except (MissingDependencyError, ImportError) as exc:  # the evaluation stack is optional here
        if not args.force:
            raise PrecisionError(f"the accuracy gate cannot run here ({exc})",
                                 "install what it names, or accept the variant unscored with --force") from exc
        print(f"warning: accuracy gate skipped ({exc}); variant accepted unscored because of --force",
              file=sys.stderr)
        return None
    result = gate(args.precision, onnx_path, candidate, evaluate, GATE_LIMITS)
    print(f"gate: {result.summary()}")
    enforce(result, args.force)
    if not result.passed:
        print(f"warning: accepted above the gate because of --force ({result.drop - result.limit:.2f} PQ over)",
              file=sys.stderr)
    return result


def tensorrt_stage(onnx_path: Path, args: argparse.Namespace) -> int:
    from perception.inference.trt_build import BuildOptions

    try:
        from perception.inference.tensorrt import TrtEngine

        engine = TrtEngine(onnx_path, EngineOptions(device=args.device, precision=args.precision,
                                                    cache_dir=args.cache_dir),
                           build=BuildOptions(workspace_mib=args.workspace_mib, optimization_level=args.opt_level))
    except MissingDependencyError as exc:
        print(f"TensorRT stage skipped: {exc.problem}.\n  install: {exc.fix}\n"
              f"  the ONNX stage is done; run this command again where TensorRT and a GPU are present")
        return 0
    with engine:
        print(f"TensorRT stage: plan {engine.plan.status} at {engine.plan.path}")
        print(f"  TensorRT {engine.key.tensorrt_version} on {engine.key.gpu_name} (cc {engine.key.compute_capability})")
        for spec in (*engine.inputs, *engine.outputs):
            print(f"  {spec.name}: {list(spec.shape)} {spec.dtype}")
    return 0
