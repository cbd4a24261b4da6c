"""`perception bench NAME [--json] [--quick]`: run one of the project's benchmarks (perception.tools.bench)."""

from __future__ import annotations

import argparse
import json
import sys

from perception.commands.run import SWITCH_INTERVAL_S
from perception.tools.bench import BENCHMARKS, run_benchmark
from perception.tools.bench.report import format_report


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark: node, overhead, overload, wire, scaling, peers",
        description="Run one benchmark and print its figure, the machine (CPU, cores, load average before and "
        "after), versions and parameters. Contenders alternate within this one run; figures are medians "
        "over repetitions. docs/benchmarks.md lists every figure and its target.",
        epilog="\n".join(f"{name}: {what}" for name, what in BENCHMARKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--quick", action="store_true", help="a small variant that runs in seconds (a smoke test; "
                   "its figures are not meaningful)")
    p.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # the node is measured as `perception run` runs it
    report = run_benchmark(args.name, args.quick)
    print(json.dumps(report) if args.json else format_report(report), flush=True)
    return 0
