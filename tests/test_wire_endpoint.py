"""Endpoints: parsing, loopback-only binds, endpoints in use, with real sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from perception.wire.endpoint import parse_endpoint
from perception.wire.errors import EndpointInUseError, WireError
from perception.wire.publisher import Publisher


@pytest.mark.parametrize(
    ("uri", "loopback"),
    [
        ("tcp://127.0.0.1:5560", True),
        ("tcp://127.0.0.2:5560", True),
        ("tcp://localhost:5560", True),
        ("tcp://[::1]:5560", True),
        ("tcp://127.0.0.1:*", True),
        ("ipc:///tmp/perception.sock", True),
        ("inproc://perception", True),
        ("tcp://0.0.0.0:5560", False),
        ("tcp://*:5560", False),
        ("tcp://192.168.1.20:5560", False),
        ("tcp://eth0:5560", False),
        ("tcp://[::]:5560", False),
    ],
)
def test_loopback_classification(uri: str, loopback: bool) -> None:
    assert parse_endpoint(uri).is_loopback is loopback


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("127.0.0.1:5560", "is not a ZeroMQ URI"),
        ("udp://127.0.0.1:5560", "uses transport 'udp'"),
        ("tcp://127.0.0.1", "lacks HOST:PORT"),
        ("tcp://127.0.0.1:http", "has port 'http'"),
        ("tcp://127.0.0.1:70000", "has port '70000'"),
        ("tcp://", "has no address"),
    ],
)
def test_malformed_endpoints_are_wire_errors(uri: str, message: str) -> None:
    with pytest.raises(WireError, match=message) as info:
        Publisher(uri)
    assert "tcp://127.0.0.1:5560" in info.value.fix or "port" in info.value.fix


@pytest.mark.parametrize("uri", ["tcp://0.0.0.0:*", "tcp://*:*"])
def test_public_bind_is_refused_unless_allowed(uri: str) -> None:
    with pytest.raises(WireError, match="refusing to publish on non-loopback") as info:
        Publisher(uri)
    assert "allow_public" in info.value.fix
    with Publisher(uri, allow_public=True) as pub:
        assert pub.endpoint.startswith("tcp://0.0.0.0:")


def test_wildcard_port_resolves_to_the_bound_port() -> None:
    with Publisher("tcp://127.0.0.1:*") as pub:
        port = int(pub.endpoint.rsplit(":", 1)[1])
        assert 0 < port < 65536


def test_ipv6_loopback_binds() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("IPv6 loopback not configured")
    with Publisher("tcp://[::1]:*") as pub:
        assert pub.endpoint.startswith("tcp://[::1]:")


def test_tcp_endpoint_in_use_names_endpoint_and_fix() -> None:
    with Publisher("tcp://127.0.0.1:*") as first:
        with pytest.raises(EndpointInUseError, match=f"endpoint {first.endpoint} is already in use") as info:
            Publisher(first.endpoint)
        assert "choose another --endpoint" in info.value.fix


def test_tcp_endpoint_held_by_another_program_is_in_use() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        with pytest.raises(EndpointInUseError):
            Publisher(f"tcp://127.0.0.1:{holder.getsockname()[1]}")
    finally:
        holder.close()


def test_ipc_endpoint_in_use_is_not_stolen(tmp_path: Path) -> None:
    uri = f"ipc://{tmp_path}/node.sock"
    with Publisher(uri), pytest.raises(EndpointInUseError, match="already in use"):
        Publisher(uri)


def test_stale_ipc_socket_file_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # leaves the file behind, nobody listening: like a node that was killed
    assert path.exists()
    with Publisher(f"ipc://{path}") as pub:
        assert pub.endpoint == f"ipc://{path}"


def test_ipc_in_missing_directory_and_over_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(WireError, match="does not exist"):
        Publisher(f"ipc://{tmp_path}/missing/node.sock")
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    with pytest.raises(WireError, match="not a socket"):
        Publisher(f"ipc://{regular}")


def test_publisher_error_leaves_no_socket_behind(tmp_path: Path) -> None:
    # A refused bind must close what it opened: the same endpoint binds right after.
    uri = f"ipc://{tmp_path}/again.sock"
    with Publisher(uri), pytest.raises(EndpointInUseError):
        Publisher(uri)
    with Publisher(uri) as pub:
        assert pub.endpoint == uri
