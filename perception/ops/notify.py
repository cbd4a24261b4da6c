"""systemd's notify protocol (sd_notify(3)) in a few lines: KEY=VALUE datagrams to $NOTIFY_SOCKET.

Written here rather than taken from a helper package because the protocol is one datagram
per call on an AF_UNIX socket (a path, or an abstract name written '@name'), and the helpers
on PyPI (sdnotify, systemd-python) either drop errors silently or need libsystemd headers.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Mapping

from perception.ops.errors import OpsError


class SystemdNotifier:
    def __init__(self, address: str, watchdog_interval_s: float | None = None) -> None:
        """Connect now, so a NOTIFY_SOCKET that names nothing is reported at start, not ignored."""
        self.address = address
        self.watchdog_interval_s = watchdog_interval_s
        target = "\0" + address[1:] if address.startswith("@") else address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._socket.connect(target)
        except OSError as exc:
            self._socket.close()
            reason = "nothing listens there" if exc.errno in (errno.ENOENT, errno.ECONNREFUSED) else exc.strerror
            raise OpsError(f"NOTIFY_SOCKET={address} cannot be used ({reason})",
                           "run under systemd with Type=notify, or unset NOTIFY_SOCKET") from None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier | None:
        """The notifier systemd asked for, or None when the node is not run by a Type=notify unit."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        if not (address.startswith(("/", "@"))):
            raise OpsError(f"NOTIFY_SOCKET={address} is neither a socket path nor an abstract @name",
                           "run under systemd with Type=notify, or unset NOTIFY_SOCKET")
        return cls(address, _watchdog_interval(env))

    def send(self, **fields: str) -> None:
        """One datagram of KEY=VALUE lines; a systemd that went away is not the node's failure."""
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        with contextlib.suppress(OSError):
            self._socket.send(message.encode())

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status)

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def watchdog(self) -> None:
        self.send(WATCHDOG="1")

    def stopping(self, status: str) -> None:
        self.send(STOPPING="1", STATUS=status)

    def close(self) -> None:
        self._socket.close()


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of WatchdogSec (as systemd advises), if the watchdog is armed for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. a wrapper script's child)
    return int(usec) / 2e6
