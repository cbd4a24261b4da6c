"""`perception compare A.mcap B.mcap`: per-frame differences between two recorded runs (B against A)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from perception.core.errors import ConfigError

if TYPE_CHECKING:
    from perception.tools.compare import SegmentRef


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare the published outputs of two recorded runs",
                       description="Pair the frames of two `perception run --record` files by frame index and "
                                   "report objects added/removed, mask IoU of matched segments and PQ of B "
                                   "against A. Exit 0, or 1 when --min-pq is given and not reached.")
    p.add_argument("a", type=Path, help="reference run (MCAP)")
    p.add_argument("b", type=Path, help="run to judge (MCAP)")
    p.add_argument("--all", action="store_true", help="list every frame, not only the ones that differ")
    p.add_argument("--json", action="store_true", help="print the whole comparison as one JSON object")
    p.add_argument("--iou", type=float, default=0.5, help="IoU above which segments match (>= 0.5; default 0.5)")
    p.add_argument("--score-tol", type=float, default=1e-5,
                   help="score changes up to this are not reported as differences (default 1e-5)")
    p.add_argument("--min-pq", type=float, default=None, help="exit 1 if PQ of B against A is below this")
    p.set_defaults(func=run)


def _names(refs: tuple[SegmentRef, ...], sign: str) -> str:
    return " ".join(f"{sign}{r.class_name}#{r.id}" for r in refs)


def run(args: argparse.Namespace) -> int:
    from perception.tools.compare import compare_runs

    if not 0.5 <= args.iou < 1.0:
        raise ConfigError(f"--iou {args.iou} is out of range", "use 0.5 <= IoU < 1 (above 0.5 matches are unique)")
    if not 0.0 <= args.score_tol < 1.0:
        raise ConfigError(f"--score-tol {args.score_tol} is out of range", "use 0 <= tolerance < 1, e.g. 1e-5")
    result = compare_runs(args.a, args.b, iou_threshold=args.iou)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        tol = args.score_tol
        shown = [f for f in result.frames if args.all or not f.same_within(tol)]
        if shown:
            print(f"{'camera':<8} {'frame':>6} {'A':>4} {'B':>4} {'mIoU':>6} {'PQ':>6}  changes")
        for f in shown:
            miou = "-" if f.mean_iou is None else f"{f.mean_iou:.3f}"
            changes = " ".join(filter(None, (_names(f.added, "+"), _names(f.removed, "-"), *f.differences(tol)))) or (
                "identical" if f.identical else f"scores within {tol:g}")
            print(f"{f.camera:<8} {f.frame_index:>6} {f.count_a:>4} {f.count_b:>4} {miou:>6} {f.pq:>6.3f}  {changes}")
        identical = sum(f.identical for f in result.frames)
        within = sum(f.same_within(tol) and not f.identical for f in result.frames)
        drifted = f"{within} with scores within {tol:g}, " if within else ""
        print(f"compared {len(result.frames)} frames: {identical} identical, {drifted}"
              f"{len(result.frames) - identical - within} differ; only in A: {len(result.only_in_a)}, "
              f"only in B: {len(result.only_in_b)}")
        print(f"PQ {result.pq:.4f}  SQ {result.sq:.4f}  RQ {result.rq:.4f}  (B against A, averaged over "
              f"{sum(1 for t in result.classes.values() if t.tp + t.fp + t.fn)} classes)")
        for class_id, tally in sorted(result.classes.items()):
            name = result.class_names.get(class_id, f"class{class_id}")
            print(f"  {name:<20} PQ {tally.pq:.4f}  TP {tally.tp}  FP {tally.fp}  FN {tally.fn}")
        if result.identical:
            print("the runs are identical")
    if args.min_pq is not None and result.pq < args.min_pq:
        print(f"perception compare: PQ {result.pq:.4f} is below --min-pq {args.min_pq}", file=sys.stderr)
        return 1
    return 0
