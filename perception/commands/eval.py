"""`perception eval`: PQ/SQ/RQ and mIoU of a model on a held-out drive, through the node's own Pipeline."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from perception.core.errors import ConfigError
from perception.runtime.config import DEFAULT_CARD

DEFAULT_SEEDS = (11, 12, 13, 14, 15, 16, 17, 18)  # the held-out test drives of the training report
TUNING_SEEDS = range(21, 37)  # validation drives the shipped card's decoder thresholds were chosen on
# held-out static-camera scenes of the motion method (its card was tuned on 31-34)
DEFAULT_STATIC_SEEDS = (41, 42, 43, 44)
# per camera: frames and fps of a rendered scene unless given; a background model needs real
# frame-to-frame motion, so static scenes are long and at a video rate
SCENE_DEFAULTS = {"forward": (25, 2.0), "static": (150, 10.0)}
# tracking drives: 10 s at the node's default 10 fps, rendered once into the drive cache
TRACKING_FRAMES, TRACKING_FPS, TRACKING_MIN_AREA = 100, 10.0, 100


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "eval", help="panoptic quality of a model on a held-out drive (PQ/SQ/RQ, mIoU)",
        description="Run the node's pipeline (preprocess, engine, decoder) over a drive with ground truth and "
                    "print PQ, SQ, RQ overall / things / stuff and per class, and semantic mIoU (COCO "
                    "panopticapi rules). The drive is a file (--drive) or rendered on the fly (--seed).")
    parser.add_argument("--card", type=Path, default=DEFAULT_CARD, help="model card (default: the shipped model)")
    parser.add_argument("--engine", default="onnxruntime", help="engine backend (default onnxruntime)")
    parser.add_argument("--threads", type=int, default=0, help="engine CPU threads (0 = backend default)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--drive", type=Path, help="drive file with ground truth (perception synth / record)")
    source.add_argument("--seed", type=int, nargs="+", help=f"render held-out drives with these seeds "
                        f"(default {' '.join(map(str, DEFAULT_SEEDS))}); seeds from 1000000 up are training seeds")
    parser.add_argument("--camera", choices=("forward", "static"), default=None,
                        help="rendered scenes: forward drives, or a fixed camera watching traffic (default: static "
                             f"for a motion card, seeds {' '.join(map(str, DEFAULT_STATIC_SEEDS))}; forward otherwise)")
    parser.add_argument("--frames", type=int, default=None, help="frames per rendered scene (default 25 forward, "
                        f"150 static; {TRACKING_FRAMES} with --tracking)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of rendered scenes (default 2 forward: "
                        "frames 0.5 s apart, less alike; 10 static and with --tracking)")
    parser.add_argument("--min-gt-area", type=int, default=None, metavar="PIXELS",
                        help="analysis: score only ground-truth things of at least PIXELS (at the drive's "
                             "resolution); smaller ones count as void. Default 0: all labelled things "
                             f"({TRACKING_MIN_AREA} with --tracking, where smaller ones are ignored)")
    parser.add_argument("--tracking", action="store_true",
                        help="measure the trackers instead (IDF1, HOTA, MOTA, ID switches, fragmentations, "
                             "velocity error) on ground-truth masks and on the model's output")
    parser.add_argument("--no-model", action="store_true",
                        help="with --tracking: ground-truth detections only (skips the model)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.set_defaults(func=run)


def _rendered(seeds: list[int], frames: int, fps: float, camera: str) -> list[Iterator[tuple[Any, Any]]]:
    """One lazily rendered scene per seed (a stateful method is reset between them)."""
    from perception.synth.drivefile import check_drive_args
    from perception.synth.scene import TRAIN_SEED_BASE
    from perception.synth.static_scene import DEFAULT_SIZES, open_scene

    width, height = DEFAULT_SIZES[camera]
    for seed in seeds:
        if seed >= TRAIN_SEED_BASE:
            raise ConfigError(f"seed {seed} is a training seed (training uses {TRAIN_SEED_BASE} and up)",
                              f"evaluate on seeds below {TRAIN_SEED_BASE}")
        check_drive_args(seed, frames, fps, width, height, camera)

    def scene(seed: int) -> Iterator[tuple[Any, Any]]:
        for frame in open_scene(camera, seed, frames, fps, width, height):
            yield frame.bgr, frame.truth

    return [scene(seed) for seed in seeds]


def _from_file(path: Path) -> Iterator[tuple[Any, Any]]:
    from perception.record.drive import read_drive

    if not path.is_file():
        raise ConfigError(f"drive {path} does not exist", "write one with perception synth --out FILE")
    count = 0
    for frame in read_drive(path):
        if frame.ground_truth is None:
            continue
        count += 1
        yield frame.bgr, frame.ground_truth
    if count == 0:
        raise ConfigError(f"drive {path} has no ground truth", "evaluate on a drive written by perception synth")


def run(args: argparse.Namespace) -> int:
    from perception.evaluation.runner import evaluate_scenes
    from perception.evaluation.table import format_report
    from perception.inference.engine import EngineOptions
    from perception.models.card import load_card
    from perception.runtime.pipeline import Pipeline, PipelineSpec
    from perception.synth.classes import CLASS_NAMES

    if args.min_gt_area is None:
        args.min_gt_area = TRACKING_MIN_AREA if args.tracking else 0
    if args.min_gt_area < 0:
        raise ConfigError(f"--min-gt-area {args.min_gt_area} is negative", "pass 0 (all things) or a pixel count")
    if args.no_model and not args.tracking:
        raise ConfigError("--no-model only applies to --tracking", "add --tracking or drop --no-model")
    if args.tracking:
        return _tracking(args)
    card = load_card(args.card)
    motion = card.kind == "classic" and card.method == "motion"
    camera = args.camera or ("static" if motion else "forward")
    default_frames, default_fps = SCENE_DEFAULTS[camera]
    count = default_frames if args.frames is None else args.frames
    fps = default_fps if args.fps is None else args.fps
    if count <= 0:
        raise ConfigError(f"--frames {count} is not positive", "pass --frames N with N >= 1")
    seeds = list(args.seed or (DEFAULT_STATIC_SEEDS if camera == "static" else DEFAULT_SEEDS))
    network_drives = not args.drive and camera == "forward" and card.kind == "network"
    tuning = [seed for seed in seeds if seed in TUNING_SEEDS] if network_drives else []
    if tuning:
        print(f"perception eval: note: seeds {tuning} are decoder-tuning drives (the shipped card's thresholds "
              f"were chosen on {TUNING_SEEDS.start}-{TUNING_SEEDS.stop - 1}), so the shipped model scores "
              f"optimistically there; the held-out test drives are {DEFAULT_SEEDS[0]}-{DEFAULT_SEEDS[-1]}",
              file=sys.stderr)
    scenes = [_from_file(args.drive)] if args.drive else _rendered(seeds, count, fps, camera)
    scene_word = "static-camera scenes" if camera == "static" else "drives"
    what = str(args.drive) if args.drive else f"synthetic {scene_word} {seeds}, {count} frames at {fps:g} fps"
    if tuning:
        what += f" (tuning drives: {tuning})"
    # the motion method publishes nothing while it learns the background: those frames are not scored
    unscored = int(card.params.get("warmup_frames", 0)) if motion else 0
    if unscored:
        what += f", first {unscored} frames of each unscored (warm-up)"
    if args.min_gt_area > 0:
        what += f", ground-truth things >= {args.min_gt_area} px"
    started = time.monotonic()

    from perception.ops.progress import Progress

    spec = PipelineSpec(card=args.card, engine=args.engine, options=EngineOptions(threads=args.threads))
    with Pipeline.open(spec) as pipeline, Progress("evaluating", None if args.drive else len(seeds) * count) as bar:
        report = evaluate_scenes(pipeline.card, pipeline.process, scenes, reset=pipeline.reset, unscored=unscored,
                                 truth_names=CLASS_NAMES, progress=bar.update, min_thing_area=args.min_gt_area)
    if args.json:
        out = report.to_dict()
        out["model"] = pipeline.card.name
        out["data"] = what
        print(json.dumps(out))
    else:
        engine = pipeline.engine.name if card.kind == "classic" else args.engine
        title = (f"{pipeline.card.name} on {what} ({engine}, {time.monotonic() - started:.1f} s)")
        print(format_report(report, title))
    return 0


def _tracking(args: argparse.Namespace) -> int:
    from perception.evaluation.tracking import load_drive
    from perception.evaluation.tracking_suite import evaluate_tracking, format_tracking
    from perception.inference.engine import EngineOptions
    from perception.record.drive import read_drive
    from perception.runtime.pipeline import Pipeline, PipelineSpec
    from perception.synth.amodal import amodal_source
    from perception.synth.drivefile import cached_drive
    from perception.synth.scene import TRAIN_SEED_BASE, Drive

    frames_each = TRACKING_FRAMES if args.frames is None else args.frames
    fps = TRACKING_FPS if args.fps is None else args.fps
    if frames_each <= 0:
        raise ConfigError(f"--frames {frames_each} is not positive", "pass --frames N with N >= 1")
    if args.drive is not None:
        if not args.drive.is_file():
            raise ConfigError(f"drive {args.drive} does not exist", "write one with perception synth --out FILE")
        paths, seeds = [args.drive], [0]
        what = str(args.drive)
        amodal: list[Any] = [None]  # a file's world is not known: velocity against the visible centroid only
    else:
        seeds = list(args.seed or DEFAULT_SEEDS)
        for seed in seeds:
            if seed >= TRAIN_SEED_BASE:
                raise ConfigError(f"seed {seed} is a training seed (training uses {TRAIN_SEED_BASE} and up)",
                                  f"evaluate on seeds below {TRAIN_SEED_BASE}")
        paths = [cached_drive(seed, frames_each, fps) for seed in seeds]
        amodal = [amodal_source(Drive(seed, frames_each, fps)) for seed in seeds]
        what = f"synthetic drives {seeds}, {frames_each} frames at {fps:g} fps"

    def frames(path: Path) -> Iterator[tuple[int, Any, Any]]:
        for frame in read_drive(path):
            if frame.ground_truth is None:
                raise ConfigError(f"drive {path} has frames without ground truth",
                                  "evaluate on a drive written by perception synth")
            yield frame.stamp_ns, frame.bgr, frame.ground_truth

    started = time.monotonic()
    truth = [load_drive(frames(p), None, a) for p, a in zip(paths, amodal, strict=True)]
    model, model_name = None, None
    if not args.no_model:
        spec = PipelineSpec(card=args.card, engine=args.engine, options=EngineOptions(threads=args.threads))
        with Pipeline.open(spec) as pipeline:
            # the same truth (amodal part included), the model's segmentations as detections
            model = [[replace(f, detections=pipeline.process(bgr))
                      for f, (_, bgr, _) in zip(drive, frames(p), strict=True)]
                     for drive, p in zip(truth, paths, strict=True)]
            model_name = pipeline.card.name
    report = evaluate_tracking(truth, seeds, args.min_gt_area, model)
    report.update(data=what, model_name=model_name, seconds=round(time.monotonic() - started, 1))
    if args.json:
        print(json.dumps(report))
    else:
        title = f"tracking on {what}" + (f", model {model_name}" if model_name else "")
        print(format_tracking(report, title + f" ({report['seconds']:.1f} s)"))
    return 0
