"""`perception doctor`: which GPU pieces this machine has and which engine backends it can use."""

from __future__ import annotations

import argparse
import json

from perception.tools.doctor import diagnose


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="check GPU, driver, CUDA, TensorRT, pycuda and ONNX Runtime; say which backends are usable",
        description="Probe the machine (read-only, a few seconds at most) and report, for each engine "
        "backend, whether it is usable here and why not. Missing pieces are findings, not errors: exit 0.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=doctor)


def doctor(args: argparse.Namespace) -> int:
    report = diagnose()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0
