"""`perception engines list|clear`: the TensorRT plan cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from perception.inference.plan_cache import PlanCache


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "engines",
        help="list or clear cached TensorRT plans",
        description="Plans are cached under $XDG_CACHE_HOME/perception/engines (~/.cache/... by default), "
        "keyed by ONNX sha256, TensorRT version, GPU, precision, shapes and builder options.",
    )
    p.add_argument("action", choices=("list", "clear"))
    p.add_argument("--cache-dir", type=Path, default=None, help="plan cache folder (default: the user cache)")
    p.set_defaults(func=engines)


def engines(args: argparse.Namespace) -> int:
    cache = PlanCache(args.cache_dir)
    if args.action == "clear":
        removed = cache.clear()
        print(f"removed {removed} plan(s) from {cache.root}")
        return 0
    entries = cache.entries()
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
