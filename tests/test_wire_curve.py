"""CURVE on loopback: only a client whose public key is in the node's clients/ folder receives."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import zmq
import zmq.utils.monitor

from perception.wire.curve import load_client_keys, load_server_keys, write_keys
from perception.wire.errors import WireError
from perception.wire.messages import FrameMessage
from perception.wire.publisher import Publisher
from perception.wire.schema import Kind
from perception.wire.subscriber import Subscriber
from tests.wire_support import result

FAILED_HANDSHAKES = (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                     zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def _client_folder(tmp: Path, name: str, server_key: Path, secret: Path) -> Path:
    """What a client machine holds: the server's public key and its own secret key."""
    folder = tmp / name
    folder.mkdir()
    shutil.copy(server_key, folder / "server.key")
    shutil.copy(secret, folder / secret.name)
    return folder


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    node = tmp_path / "node-keys"
    write_keys(node, "planner")
    elsewhere = tmp_path / "other-node"  # another node's keys: its server key and a client it allows
    write_keys(elsewhere, "stranger")
    return {
        "node": node,
        "valid": _client_folder(tmp_path, "valid", node / "server.key", node / "planner.key_secret"),
        "unknown key": _client_folder(tmp_path, "unknown", node / "server.key", elsewhere / "stranger.key_secret"),
        "wrong server key": _client_folder(tmp_path, "wrong", elsewhere / "server.key", node / "planner.key_secret"),
    }


def _wait_for_failed_handshakes(monitor: zmq.Socket, count: int) -> list[int]:
    seen: list[int] = []
    while len(seen) < count:
        assert monitor.poll(20_000), f"only {len(seen)} of {count} refused handshakes within 20 s"
        event = zmq.utils.monitor.recv_monitor_message(monitor)["event"]
        if event in FAILED_HANDSHAKES:
            seen.append(event)
    return seen


def test_curve_matrix_valid_client_receives_and_the_others_get_nothing(keys: dict[str, Path]) -> None:
    with Publisher("tcp://127.0.0.1:*", curve=load_server_keys(keys["node"]), sndhwm=100) as pub:
        # the node's own socket reports each refused handshake: wait for that state, not for a time
        monitor = pub._socket.get_monitor_socket()
        valid = Subscriber(pub.endpoint, curve_keys=keys["valid"], topics=("frame",), max_age_ms=None)
        others = {
            "unknown key": Subscriber(pub.endpoint, curve_keys=keys["unknown key"], topics=("frame",)),
            "no key": Subscriber(pub.endpoint, topics=("frame",)),
            "wrong server key": Subscriber(pub.endpoint, curve_keys=keys["wrong server key"], topics=("frame",)),
        }
        try:
            assert pub.wait_for_subscription(Kind.FRAME, timeout_s=20)
            _wait_for_failed_handshakes(monitor, 3)
            for i in range(10):
                pub.publish_frame(result(i))
            got = [m.frame_index for m in valid.messages(timeout=5.0, count=10) if isinstance(m, FrameMessage)]
            stray = {name: sub.recv(timeout=0.3) for name, sub in others.items()}
            assert pub.subscriptions[Kind.FRAME] == 1  # only the valid client's subscription got through
            # the node goes on serving the valid client
            pub.publish_frame(result(10))
            after = valid.recv(timeout=5.0)
        finally:
            pub._socket.disable_monitor()
            monitor.close()
            for sub in [valid, *others.values()]:
                sub.close()
    assert got == list(range(10))
    assert stray == dict.fromkeys(others)
    assert isinstance(after, FrameMessage) and after.frame_index == 10
    assert valid.totals.frames_received == 11 and all(s.totals.received == 0 for s in others.values())


def test_curve_allows_a_non_loopback_bind_without_allow_public(keys: dict[str, Path]) -> None:
    with pytest.raises(WireError, match="--curve-keys"):
        Publisher("tcp://0.0.0.0:*")
    with Publisher("tcp://0.0.0.0:*", curve=load_server_keys(keys["node"])) as pub:
        assert pub.endpoint.startswith("tcp://0.0.0.0:")


def test_key_layout_and_adding_a_second_client(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    first = write_keys(folder)
    second = write_keys(folder, "robot2")
    assert sorted(p.relative_to(folder).as_posix() for p in first) == [
        "client.key_secret", "clients/client.key", "server.key", "server.key_secret"]
    assert sorted(p.relative_to(folder).as_posix() for p in second) == ["clients/robot2.key", "robot2.key_secret"]
    assert all(os.stat(p).st_mode & 0o077 == 0 for p in folder.glob("*.key_secret"))
    assert load_server_keys(folder).client_count == 2
    with pytest.raises(WireError, match="already has keys"):
        write_keys(folder, "robot2")
    with pytest.raises(WireError, match="2 client secret keys"):
        load_client_keys(folder)
    assert load_client_keys(folder, "robot2").server_public == load_server_keys(folder).public


@pytest.mark.parametrize("damage", ["no folder", "folder is a file", "empty clients", "no clients folder",
                                    "clients is a file", "unreadable clients", "corrupt client key",
                                    "empty client key", "no server secret", "server secret is a folder"])
def test_a_key_folder_that_cannot_be_used_stops_start_up(tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "keys"
    write_keys(folder)
    clients = folder / "clients"
    if damage == "no folder":
        folder = tmp_path / "missing"
    elif damage == "folder is a file":
        folder = tmp_path / "keys.txt"
        folder.write_text("not a folder\n")
    elif damage == "empty clients":
        (clients / "client.key").unlink()
    elif damage == "no clients folder":
        shutil.rmtree(clients)
    elif damage == "clients is a file":
        shutil.rmtree(clients)
        clients.write_text("robot\n")
    elif damage == "unreadable clients":
        if os.geteuid() == 0:  # the other damages here do not depend on permissions, so they run as root too
            pytest.skip("root reads any folder")
        clients.chmod(0)
    elif damage == "corrupt client key":
        (clients / "client.key").write_text("not a certificate\n")
    elif damage == "empty client key":
        (clients / "client.key").write_bytes(b"")
    elif damage == "no server secret":
        (folder / "server.key_secret").unlink()
    else:
        (folder / "server.key_secret").unlink()
        (folder / "server.key_secret").mkdir()
    try:
        with pytest.raises(WireError) as info:
            load_server_keys(folder)
    finally:
        if clients.is_dir():
            clients.chmod(0o700)
    assert info.value.fix and str(info.value.problem)
