"""The node's socket under hostile peers: 1,000 junk TCP connections and one peer announcing a
1 GiB message. A real subscriber keeps receiving, and the node's memory stays where it was."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

from perception.wire.messages import FrameMessage, StatusMessage
from perception.wire.subscriber import Subscriber
from tests.node_helpers import REPO, write_launch
from tests.wire_support import free_tcp_endpoint

JUNK_CONNECTIONS = 1000
ANNOUNCED_BYTES = 1 << 30
SENT_OF_IT = 64 << 20  # what the hostile peer actually sends of its 1 GiB before it is cut off
RSS_SLACK_MIB = 32


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def zmtp_greeting() -> bytes:
    """ZMTP 3.0 greeting of a NULL-mechanism client (RFC 23): signature, version, mechanism, filler."""
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def zmtp_ready(socket_type: bytes = b"SUB") -> bytes:
    body = b"\x05READY" + bytes([len(b"Socket-Type")]) + b"Socket-Type" + struct.pack(">I", len(socket_type)) \
        + socket_type
    return bytes([0x04, len(body)]) + body


def announce_huge_message(host: str, port: int) -> int:
    """Handshake like a subscriber, then send a frame header announcing 1 GiB and stream zeros.
    Returns how many body bytes the node took before it dropped the connection."""
    sent = 0
    with socket.create_connection((host, port), timeout=10) as peer:
        peer.sendall(zmtp_greeting())
        peer.recv(64)  # the node's greeting
        peer.sendall(zmtp_ready())
        peer.sendall(b"\x02" + struct.pack(">Q", ANNOUNCED_BYTES))
        chunk = bytes(1 << 20)
        try:
            while sent < SENT_OF_IT:
                peer.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # reset by the node: what we want
    return sent


def junk_connections(host: str, port: int) -> list[socket.socket]:
    """A third send garbage, a third a greeting and stop, a third connect and say nothing."""
    peers = []
    for i in range(JUNK_CONNECTIONS):
        peer = socket.create_connection((host, port), timeout=10)
        if i % 3 == 0:
            peer.sendall(os.urandom(256))
        elif i % 3 == 1:
            peer.sendall(zmtp_greeting()[:40])
        peers.append(peer)
    return peers


def _frames_after(sub: Subscriber, seq: int, count: int) -> list[FrameMessage]:
    got = []
    for msg in sub.messages(timeout=10):
        if isinstance(msg, FrameMessage) and msg.seq > seq:
            got.append(msg)
            if len(got) == count:
                break
    return got


def test_junk_connections_and_a_1gib_announcement_neither_stop_delivery_nor_grow_the_node(tmp_path: Path) -> None:
    endpoint = free_tcp_endpoint()
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    launch = write_launch(tmp_path, "fake:?fps=30&width=128&height=96", endpoint)
    node = subprocess.Popen([sys.executable, "-m", "perception", "run", str(launch), "--quiet"],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        with Subscriber(endpoint, "cam0", topics=("frame", "status")) as sub:
            warm = _frames_after(sub, -1, 60)  # two seconds of frames: the node is at its working size
            assert len(warm) == 60, "the node never delivered"
            before = rss_mib(node.pid)
            peers = junk_connections(host, int(port))
            during = _frames_after(sub, warm[-1].seq, 30)
            with_junk = rss_mib(node.pid)
            taken = announce_huge_message(host, int(port))
            after = _frames_after(sub, during[-1].seq if during else warm[-1].seq, 30)
            after_rss = rss_mib(node.pid)
            for peer in peers:
                peer.close()
            node.send_signal(signal.SIGINT)
            stopped = [m for m in sub.messages(timeout=10) if isinstance(m, StatusMessage) and m.state == "stopped"]
        _, err = node.communicate(timeout=30)
    finally:
        node.kill()
    assert node.returncode == 0, err
    assert len(during) == 30 and len(after) == 30, "delivery to the real subscriber stopped"
    assert stopped
    assert taken < SENT_OF_IT, "the node kept reading a message it can never accept"
    print(f"node RSS {before:.1f} MiB before, {with_junk:.1f} with {JUNK_CONNECTIONS} junk connections, "
          f"{after_rss:.1f} after the 1 GiB announcement ({taken >> 20} MiB taken)")
    assert max(with_junk, after_rss) - before < RSS_SLACK_MIB
