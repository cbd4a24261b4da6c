"""`perception stats`: a live table of per-stage and end-to-end latency percentiles, fps and counters."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from perception.commands.echo import add_subscriber_arguments, check_counts, flat_counters
from perception.wire.errors import WireError
from perception.wire.messages import StatsMessage, StatusMessage
from perception.wire.schema import Kind

PERCENTILE_KEYS = ("p50_ns", "p90_ns", "p99_ns", "max_ns")
CLEAR_SCREEN = "\x1b[H\x1b[J"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "stats",
        help="show live latency percentiles, fps and counters of a node",
        description="Subscribe to a node's stats topic (about 1 Hz) and print p50/p90/p99/max per stage "
        "and end to end (CLOCK_MONOTONIC, ms), fps and counters.",
    )
    add_subscriber_arguments(p)
    p.add_argument("--count", type=int, default=None, help="stop after N stats messages")
    p.set_defaults(func=stats)


def _ms(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return f"{value / 1e6:>9.2f}" if isinstance(value, (int, float)) else f"{'-':>9}"


def format_stats(msg: StatsMessage, status: StatusMessage | None = None) -> str:
    """Render one stats snapshot; tolerant of missing keys (the map is produced by another process)."""
    s = msg.stats
    head = f"camera {msg.camera}  epoch {msg.epoch:016x}  seq {msg.seq}"
    if status is not None:
        head += f"  state {status.state}"
    fps = s.get("fps")
    lines = [
        head,
        f"fps {fps:.1f}" if isinstance(fps, (int, float)) else "fps -",
        f"window {s.get('window_frames', '-')} frames, clock {s.get('clock', '?')}, ms",
        f"{'stage':<14}" + "".join(f"{k[:-3]:>9}" for k in PERCENTILE_KEYS) + f"{'count':>9}",
    ]
    rows: dict[str, Any] = dict(s.get("stages") or {})
    for total in ("service", "end_to_end"):  # service: dequeue -> publish, without the wait for the engine
        if isinstance(s.get(total), Mapping):
            rows[total] = s[total]
    for name, row in rows.items():
        if isinstance(row, Mapping):
            count = row.get("count", "-")
            lines.append(f"{name:<14}" + "".join(_ms(row, k) for k in PERCENTILE_KEYS) + f"{count!s:>9}")
    counters = s.get("counters")
    if isinstance(counters, Mapping):
        lines.append("counters " + flat_counters(counters))
    return "\n".join(lines)


def stats(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from perception.wire.subscriber import Subscriber

    check_counts(args)
    out = out or sys.stdout
    live = out.isatty()
    shown = 0
    status: StatusMessage | None = None
    with Subscriber(args.endpoint, args.camera, topics=(Kind.STATS, Kind.STATUS), curve_keys=args.curve_keys) as sub:
        for msg in sub.messages(timeout=args.timeout):
            if isinstance(msg, StatusMessage):
                status = msg
                continue
            if not isinstance(msg, StatsMessage):
                continue
            table = format_stats(msg, status)
            # On a terminal redraw in place; piped output gets one table after another.
            print((CLEAR_SCREEN if live else "") + table + ("" if live else "\n"), file=out, flush=True)
            shown += 1
            if args.count is not None and shown >= args.count:
                break
    if shown == 0:
        raise WireError(
            f"no stats from {args.endpoint} (camera {args.camera}) in {args.timeout} s",
            "start the node (perception run) or check --endpoint and --camera",
        )
    return 0
