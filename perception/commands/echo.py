"""`perception echo`: print each frame's objects and latency, plus gaps, restarts and status."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from perception.wire.errors import WireError
from perception.wire.limits import DEFAULT_MAX_AGE_MS
from perception.wire.messages import (
    FrameMessage,
    Message,
    MetadataMessage,
    PredictedObject,
    SegmentObject,
    StatusMessage,
)
from perception.wire.schema import DEFAULT_ENDPOINT, Kind
from perception.wire.sequence import GapEvent, RestartEvent


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "echo",
        help="print frames, objects and latency published by a node",
        description="Subscribe to a node and print one line per frame (seq, frame index, stamp, objects, "
        "capture->receive latency in ms on the same host), plus gaps, restarts and status.",
    )
    add_subscriber_arguments(p)
    p.add_argument("--count", type=int, default=None, help="stop after N frames")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    p.add_argument("--latest", action="store_true", help="skip queued frames, always show the newest")
    p.add_argument("--max-age-ms", type=float, default=DEFAULT_MAX_AGE_MS,
                   help=f"drop (and count) frames older than this (default {DEFAULT_MAX_AGE_MS:g}; 0 = show all, "
                        "e.g. for a lock-step run or a replay read from another host)")
    p.set_defaults(func=echo)


def add_subscriber_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"node endpoint (default {DEFAULT_ENDPOINT})")
    p.add_argument("--camera", default="cam0", help="camera name (default cam0)")
    p.add_argument(
        "--timeout", type=float, default=None, help="give up after S seconds without a message (default: wait)"
    )
    p.add_argument("--curve-keys", metavar="DIR", default=None,
                   help="CURVE: DIR holds server.key and this client's NAME.key_secret (perception keys)")


def check_counts(args: argparse.Namespace) -> None:
    if getattr(args, "max_age_ms", 0) < 0:
        raise WireError(f"--max-age-ms {args.max_age_ms} is negative", "give milliseconds > 0, or 0 for no budget")
    if args.count is not None and args.count < 1:
        raise WireError(f"--count {args.count} is not positive", "give N >= 1 or leave it out")
    if args.timeout is not None and args.timeout <= 0:
        raise WireError(f"--timeout {args.timeout} is not positive", "give seconds > 0 or leave it out")


class Printer:
    """Writes messages and events as text or JSON lines."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json

    def emit(self, text: str, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=_plain_json) if self.as_json else text
        print(line, file=self.out, flush=True)

    def gap(self, event: GapEvent) -> None:
        self.emit(
            f"! gap on {event.kind.value}: {event.missed} missed (seq {event.expected_seq - 1} -> {event.seq})",
            {"event": "gap", "topic": event.kind.value, "missed": event.missed, "seq": event.seq},
        )

    def restart(self, event: RestartEvent) -> None:
        self.emit(
            f"! publisher restarted: epoch {event.old_epoch:016x} -> {event.new_epoch:016x} ({event.reason})",
            {"event": "restart", "old_epoch": event.old_epoch, "new_epoch": event.new_epoch, "reason": event.reason},
        )

    def error(self, exc: WireError) -> None:
        self.emit(f"! bad message: {exc}", {"event": "decode_error", "error": str(exc)})

    def message(self, msg: Message) -> None:
        if isinstance(msg, FrameMessage):
            self.frame(msg)
        elif isinstance(msg, StatusMessage):
            counters = flat_counters(msg.counters)
            detail = f" ({msg.detail})" if msg.detail else ""
            self.emit(
                f"status {msg.state}{detail} {counters}",
                {"kind": "status", "seq": msg.seq, "state": msg.state, "detail": msg.detail, "counters": msg.counters},
            )
        elif isinstance(msg, MetadataMessage):
            model = msg.metadata.get("model", {})
            name = model.get("name", "?") if isinstance(model, dict) else "?"
            self.emit(
                f"meta model {name}, {len(msg.class_names)} classes, epoch {msg.epoch:016x}",
                {"kind": "meta", "seq": msg.seq, "epoch": msg.epoch, "metadata": dict(msg.metadata)},
            )

    def frame(self, msg: FrameMessage) -> None:
        latency = msg.capture_to_receive_ns
        latency_ms = None if latency is None else round(latency / 1e6, 3)
        objects = msg.summary() or "-"
        text = (
            f"#{msg.seq} frame {msg.frame_index} stamp {msg.stamp_ns / 1e9:.6f} "
            f"{len(msg.segments)} obj: {objects}  capture->recv "
            + ("?" if latency_ms is None else f"{latency_ms:.1f} ms")
            + track_summary(msg.tracks)
            + predicted_summary(msg.predicted)
        )
        record = {
            "kind": "frame",
            "seq": msg.seq,
            "epoch": msg.epoch,
            "frame_index": msg.frame_index,
            "stamp_ns": msg.stamp_ns,
            "width": msg.width,
            "height": msg.height,
            "objects": [o._asdict() for o in msg.objects],
            "predicted": [p._asdict() for p in msg.predicted],
            "capture_to_receive_ms": latency_ms,
            "publish_to_receive_ms": round(msg.publish_to_receive_ns / 1e6, 3),
        }
        self.emit(text, record)


def track_summary(tracks: list[SegmentObject]) -> str:
    """'  tracks: car#12 34px/s, person#13 ?' (? = velocity not valid yet, * = tentative)."""
    if not tracks:
        return ""
    shown = []
    for t in sorted(tracks, key=lambda t: t.instance_id):
        speed = f"{t.speed:.0f}px/s" if t.velocity_valid else "?"
        shown.append(f"{t.class_name}#{t.instance_id}{'*' if t.track_state == 'tentative' else ''} {speed}")
    return "  tracks: " + ", ".join(shown)


def predicted_summary(predicted: list[PredictedObject]) -> str:
    """'  predicted: car#9 lost 0.25s' (tracks not seen in this frame, still predicted)."""
    if not predicted:
        return ""
    return "  predicted: " + ", ".join(f"{p.class_name}#{p.instance_id} lost {p.lost_s:.2f}s"
                                        for p in sorted(predicted, key=lambda p: p.instance_id))


def flat_counters(counters: Mapping[str, Any], prefix: str = "") -> str:
    """{"read": 3, "dropped": {"stale": 1}} -> 'read=3 dropped.stale=1' (an empty map shows as 0)."""
    parts = []
    for key, value in counters.items():
        if isinstance(value, Mapping):
            parts.append(flat_counters(value, f"{prefix}{key}.") or f"{prefix}{key}=0")
        else:
            parts.append(f"{prefix}{key}={value}")
    return " ".join(parts)


def _plain_json(value: object) -> object:
    """Decoded headers hold read-only mappings; JSON wants dicts."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def echo(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from perception.wire.subscriber import Subscriber

    check_counts(args)
    out = out or sys.stdout
    printer = Printer(out, args.json)
    frames = 0
    with Subscriber(
        args.endpoint,
        args.camera,
        latest_only=args.latest,
        topics=(Kind.FRAME, Kind.META, Kind.STATUS),
        on_gap=printer.gap,
        on_restart=printer.restart,
        on_error=printer.error,
        curve_keys=args.curve_keys,
        max_age_ms=args.max_age_ms or None,
    ) as sub:
        for msg in sub.messages(timeout=args.timeout):
            printer.message(msg)
            if msg.kind is Kind.FRAME:
                frames += 1
                if args.count is not None and frames >= args.count:
                    break
        totals = sub.totals
    print(
        f"{frames} frames shown, {totals.missed_frames} missed in {totals.gaps} gaps, {totals.stale} stale, "
        f"{totals.superseded} superseded, {totals.restarts} restarts, {totals.decode_errors} bad messages",
        file=sys.stderr,
    )
    if totals.received == 0:
        raise WireError(
            f"no message from {args.endpoint} (camera {args.camera}) in {args.timeout} s",
            "start the node (perception run) or check --endpoint and --camera",
        )
    return 0
