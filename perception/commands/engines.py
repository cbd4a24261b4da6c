"""`perception engines list|prune|clear`: the TensorRT plan cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from perception.core.errors import ConfigError
from perception.inference.plan_cache import PlanCache


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "engines",
        help="list, prune or clear cached TensorRT plans",
        description="Plans are cached under $XDG_CACHE_HOME/perception/engines (~/.cache/... by default), "
        "keyed by ONNX sha256, TensorRT version, GPU, precision, shapes and builder options.",
    )
    p.add_argument("action", choices=("list", "prune", "clear"),
                   help="list: plans (key, size) and build failures; prune: untrusted plans, build logs and "
                        "temporary files; clear: everything")
    p.add_argument("--cache-dir", type=Path, default=None, help="plan cache folder (default: the user cache)")
    p.add_argument("--failures", action="store_true",
                   help="prune: also forget recorded build failures, so the next node start builds again")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="prune: also plans written more than DAYS ago")
    p.set_defaults(func=engines)


def engines(args: argparse.Namespace) -> int:
    cache = PlanCache(args.cache_dir)
    if args.older_than is not None and (args.action != "prune" or not args.older_than >= 0):
        raise ConfigError(f"--older-than {args.older_than:g} needs `prune` and a number of days >= 0",
                          "e.g. perception engines prune --older-than 30")
    if args.failures and args.action != "prune":
        raise ConfigError("--failures goes with `prune`", "perception engines prune --failures")
    if args.action == "prune":
        pruned = cache.prune(failures=args.failures,
                             older_than_s=args.older_than * 86400 if args.older_than is not None else None)
        for path in pruned:
            print(f"  removed {path.name}")
        print(f"pruned {len(pruned)} file(s) from {cache.root}")
        return 0
    if args.action == "clear":
        removed = cache.clear()
        print(f"removed {removed} plan(s) from {cache.root}")
        return 0
    entries = cache.entries()
    _print_failures(cache)
    if not entries:
        print(f"no plans in {cache.root}")
        return 0
    print(f"{len(entries)} plan(s) in {cache.root}:")
    for e in entries:
        if e.key is None:
            print(f"  {e.digest[:16]}  {e.plan_bytes / 1e6:7.1f} MB  UNTRUSTED: {e.problem}")
            continue
        k = e.key
        shapes = ", ".join(f"{name}{list(dims)}" for name, dims in k.shapes)
        state = f"  BAD: {e.problem}" if e.problem else ""
        print(f"  {e.digest[:16]}  {e.plan_bytes / 1e6:7.1f} MB  {k.precision:<4}  TensorRT {k.tensorrt_version}  "
              f"{k.gpu_name} (cc {k.compute_capability})  {shapes}  onnx {k.onnx_sha256[:12]}  "
              f"{Path(e.source).name or '?'}  {e.created}{state}")
    return 1 if any(e.problem for e in entries) else 0


def _print_failures(cache: PlanCache) -> None:
    """Recorded background-build failures: the node does not retry these until their inputs change."""
    failures = cache.recorded_failures()
    if not failures:
        return
    print(f"{len(failures)} recorded build failure(s) (not retried; `perception engines prune --failures`):")
    for digest, failure in failures:
        print(f"  {digest[:16]}  " + (f"{failure.when}  {failure.cause}" if failure else "unreadable record"))
