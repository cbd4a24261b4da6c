"""ZeroMQ endpoints: parse, refuse public binds unless asked, bind with errors that say what to do."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq

from perception.wire.errors import EndpointInUseError, WireError

TRANSPORTS = ("tcp", "ipc", "inproc")
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Endpoint:
    uri: str
    transport: str
    host: str = ""  # tcp only, without IPv6 brackets
    port: str = ""  # tcp only: a number or '*' (any free port)
    path: str = ""  # ipc / inproc

    @property
    def is_loopback(self) -> bool:
        if self.transport in ("ipc", "inproc"):
            return True
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # an interface name or a DNS name: cannot prove it is loopback

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host


def parse_endpoint(uri: str) -> Endpoint:
    """tcp://HOST:PORT, ipc://PATH or inproc://NAME; anything else is a WireError with an example."""
    example = "e.g. tcp://127.0.0.1:5560 or ipc:///tmp/perception.sock"
    if not isinstance(uri, str) or "://" not in uri:
        raise WireError(f"endpoint {uri!r} is not a ZeroMQ URI", example)
    transport, rest = uri.split("://", 1)
    if transport not in TRANSPORTS:
        raise WireError(
            f"endpoint {uri!r} uses transport {transport!r}", f"use one of {', '.join(TRANSPORTS)}; {example}"
        )
    if not rest:
        raise WireError(f"endpoint {uri!r} has no address", example)
    if transport != "tcp":
        return Endpoint(uri=uri, transport=transport, path=rest)
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise WireError(f"endpoint {uri!r} lacks HOST:PORT", example)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
        raise WireError(f"endpoint {uri!r} has port {port!r}", "use a port 1-65535, or * for any free port")
    return Endpoint(uri=uri, transport=transport, host=host, port=port)


def check_bindable(endpoint: Endpoint, allow_public: bool) -> None:
    if not endpoint.is_loopback and not allow_public:
        raise WireError(
            f"refusing to publish on non-loopback endpoint {endpoint.uri} without authentication",
            "use CURVE (--curve-keys DIR), bind to tcp://127.0.0.1:PORT or ipc://, "
            "or pass allow_public=True (--allow-public) on a trusted network",
        )
    if endpoint.transport == "ipc":
        _check_ipc_path(endpoint)


def _check_ipc_path(endpoint: Endpoint) -> None:
    path = Path(endpoint.path)
    if not path.parent.is_dir():
        raise WireError(f"directory of ipc endpoint {endpoint.uri} does not exist", f"create {path.parent} first")
    # libzmq silently unlinks an existing socket file and takes it over, stealing the endpoint
    # from a live node; refuse when something still accepts connections there.
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise WireError(f"ipc endpoint {endpoint.uri} is an existing file, not a socket", "choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return  # stale socket file left by a process that is gone: safe to bind over it
    finally:
        probe.close()
    raise EndpointInUseError(f"endpoint {endpoint.uri} is already in use", "stop the other node or pick another path")


def bind(sock: zmq.Socket, uri: str, *, allow_public: bool = False) -> str:
    """Bind after the loopback check; returns the endpoint actually bound (resolves port '*')."""
    endpoint = parse_endpoint(uri)
    check_bindable(endpoint, allow_public)
    if endpoint.is_ipv6:
        sock.ipv6 = True
    try:
        sock.bind(uri)
    except zmq.ZMQError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise EndpointInUseError(
                f"endpoint {uri} is already in use", "stop the other node or choose another --endpoint"
            ) from exc
        raise WireError(f"cannot bind endpoint {uri} ({exc.strerror})", "check the address and port") from exc
    last = sock.getsockopt(zmq.LAST_ENDPOINT)
    return last.decode() if isinstance(last, bytes) else str(last)
