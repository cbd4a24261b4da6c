"""HOST:PORT listen addresses for the node's HTTP servers (metrics, viewer): parse, refuse public, bind.

Both servers speak plain HTTP without authentication, so like the wire they bind loopback
unless the user says the network is trusted (--allow-public).
"""

from __future__ import annotations

import errno
import ipaddress
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from perception.ops.errors import OpsError


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int  # 0 = any free port (tests)

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a DNS or interface name: cannot prove it is loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str, what: str, default_host: str = "127.0.0.1") -> ListenAddress:
    """'HOST:PORT', ':PORT' or 'PORT' (loopback); '[::1]:PORT' for IPv6."""
    example = f"e.g. {what} 127.0.0.1:9108"
    raw = text.strip()
    host, sep, port = raw.rpartition(":")
    if not sep:
        host, port = "", raw
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not (port.isdigit() and 0 <= int(port) < 65536):
        raise OpsError(f"{what} {text!r} has no valid port", f"write HOST:PORT with a port 1-65535, {example}")
    return ListenAddress(host or default_host, int(port))


def serve_http(address: ListenAddress, handler: type[BaseHTTPRequestHandler], what: str, *,
               allow_public: bool) -> ThreadingHTTPServer:
    """Bind and serve in a daemon thread; a public address without allow_public or a busy port is an OpsError."""
    if not address.is_loopback and not allow_public:
        raise OpsError(f"refusing to serve {what} on non-loopback address {address} (no authentication)",
                       "bind 127.0.0.1:PORT, or pass --allow-public on a trusted network")
    family_server = _V6Server if ":" in address.host else ThreadingHTTPServer
    try:
        server = family_server((address.host, address.port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OpsError(f"{what} address {address} is in use",
                           "choose another port, or stop the process that holds it") from None
        raise OpsError(f"cannot serve {what} on {address} ({exc.strerror})", "check the HOST:PORT") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=what, daemon=True).start()
    return server


class _V6Server(ThreadingHTTPServer):
    import socket as _socket

    address_family = _socket.AF_INET6


def bound_port(server: ThreadingHTTPServer) -> int:
    return int(server.server_address[1])


class ReplyHandler(BaseHTTPRequestHandler):
    """Base of our handlers: whole replies with a length, and no access log (scrapes are not news)."""

    def reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass
