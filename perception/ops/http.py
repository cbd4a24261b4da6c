"""The node's operations HTTP server: GET /metrics (Prometheus text) and GET /healthz (200 or 503)."""

from __future__ import annotations

from http.server import ThreadingHTTPServer

from perception.ops.health import Health
from perception.ops.listen import ListenAddress, ReplyHandler, bound_port, serve_http
from perception.ops.metrics import NodeMetrics


class OpsServer:
    def __init__(self, address: ListenAddress, metrics: NodeMetrics, health: Health, *, allow_public: bool) -> None:
        handler = type("OpsHandler", (_Handler,), {"metrics": metrics, "health": health})
        self._server: ThreadingHTTPServer = serve_http(address, handler, "metrics", allow_public=allow_public)
        self.address = ListenAddress(address.host, bound_port(self._server))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(ReplyHandler):
    metrics: NodeMetrics
    health: Health

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body, content_type = self.metrics.exposition()
            self.reply(200, body, content_type)
        elif path == "/healthz":
            healthy, reason = self.health.check()
            self.reply(200 if healthy else 503, (reason + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self.reply(404, b"try /metrics or /healthz\n", "text/plain; charset=utf-8")
