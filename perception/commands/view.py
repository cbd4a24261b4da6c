"""`perception view`: serve a local page that draws a running node's frames, masks, tracks and latency."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from perception.ops.listen import parse_listen
from perception.wire.schema import DEFAULT_ENDPOINT

DEFAULT_PORT = 8090
log = logging.getLogger("perception.view")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="live browser view of a running node",
                       description="Subscribe to a running node and serve a page (loopback) that draws its "
                                   "frames with instance masks, class names, track ids and a latency panel. "
                                   "The picture needs the node's image topic (perception run --image-rate 5).")
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"the node's endpoint (default {DEFAULT_ENDPOINT})")
    p.add_argument("--camera", default="cam0", help="camera name (default cam0)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"page port (default {DEFAULT_PORT}; 0 = any)")
    p.add_argument("--host", default="127.0.0.1", help="page address (default 127.0.0.1)")
    p.add_argument("--allow-public", action="store_true", help="serve the page on a non-loopback address")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from perception.viewer.server import Viewer

    address = parse_listen(f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}", "--port")
    viewer = Viewer(args.endpoint, args.camera, address, allow_public=args.allow_public)
    log.info("viewer on %s (perception/%s/ on %s); Ctrl-C ends it", viewer.url, args.camera, args.endpoint)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        viewer.close()
    return 0
