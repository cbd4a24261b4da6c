"""The viewer's process: one subscriber thread feeding a ViewState, an HTTP server serving the page
and a server-sent-event stream (`/events`) per browser."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from importlib import resources

from perception.ops.listen import ListenAddress, ReplyHandler, bound_port, serve_http
from perception.viewer.view_state import ViewState
from perception.wire.subscriber import Subscriber

TOPICS = ("frame", "meta", "status", "stats", "image")
KEEPALIVE_S = 10.0


class Viewer:
    def __init__(self, endpoint: str, camera: str, address: ListenAddress, *, allow_public: bool = False) -> None:
        self.state = ViewState(camera, endpoint)
        # connects now even if no node runs yet; ZeroMQ then joins it whenever it binds
        self._subscriber = Subscriber(endpoint, camera, latest_only=True, topics=TOPICS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="viewer-subscriber", daemon=True)
        page = resources.files("perception.viewer").joinpath("page.html").read_bytes()
        handler = type("ViewerHandler", (_Handler,), {"state": self.state, "page": page})
        self._server: ThreadingHTTPServer = serve_http(address, handler, "viewer", allow_public=allow_public)
        self.address = ListenAddress(address.host, bound_port(self._server))
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.address}/"

    def _receive(self) -> None:
        while not self._stop.is_set():
            msg = self._subscriber.recv(timeout=0.2)
            if msg is None:
                self.state.on_idle()
            else:
                self.state.on_message(msg)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._subscriber.close()
        self.state.close()  # ends the event streams
        self._server.shutdown()
        self._server.server_close()


class _Handler(ReplyHandler):
    state: ViewState
    page: bytes

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        path = self.path.split("?", 1)[0]
        if path == "/":
            self.reply(200, self.page, "text/html; charset=utf-8")
        elif path == "/events":
            self._stream()
        else:
            self.reply(404, b"not found\n", "text/plain")

    def _stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        seen = 0
        try:
            while not self.state.closed:
                seen, events = self.state.wait_newer(seen, KEEPALIVE_S)
                chunk = "".join(f"event: {name}\ndata: {json.dumps(payload)}\n\n" for name, payload in events)
                self.wfile.write((chunk or ": keepalive\n\n").encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the browser went away
