"""CURVE authentication and encryption (zmq.auth): the key folder, the node's side, the client's side.

Key folder layout (`perception keys DIR`):

    DIR/server.key          server public key     (give to every client)
    DIR/server.key_secret   server secret key     (stays on the node)
    DIR/clients/NAME.key    public key of each allowed client (the node serves only these)
    DIR/NAME.key_secret     a client's secret key (give to that client only)

A folder that cannot be read, or that allows no client, stops the node's start-up: CURVE never
falls back silently to serving everyone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from perception.wire.errors import WireError

SERVER = "server"
CLIENTS = "clients"
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
DEFAULT_CLIENT = "client"
_FIX_LAYOUT = "create the folder with `perception keys DIR` (see docs/operations.md)"


def _check_curve_available() -> None:
    if not zmq.has("curve"):
        raise WireError("this libzmq was built without CURVE support", "install pyzmq's wheels (they bundle libsodium)")


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    try:
        public, secret_key = zmq.auth.load_certificate(os.fspath(path))
    except PermissionError as exc:
        raise WireError(f"key file {path} cannot be read ({exc.strerror})", "fix its permissions") from exc
    except (OSError, ValueError) as exc:
        raise WireError(f"key file {path} is missing or not a CURVE certificate ({exc})", _FIX_LAYOUT) from exc
    if secret and not secret_key:
        raise WireError(f"key file {path} holds no secret key", f"use the {SECRET_SUFFIX} file, {_FIX_LAYOUT}")
    return public, secret_key


@dataclass(frozen=True)
class ServerKeys:
    """The node's key pair and the folder of public keys it serves."""

    public: bytes
    secret: bytes
    clients_dir: Path
    client_count: int

    def start_authenticator(self, context: zmq.Context[Any]) -> Any:
        """A ZAP handler thread that admits exactly the public keys in clients_dir."""
        from zmq.auth.thread import ThreadAuthenticator

        auth = ThreadAuthenticator(context)
        auth.start()
        auth.configure_curve(domain="*", location=os.fspath(self.clients_dir))
        return auth

    def apply(self, sock: zmq.Socket[Any]) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True


@dataclass(frozen=True)
class ClientKeys:
    """A client's key pair and the server public key it expects."""

    public: bytes
    secret: bytes
    server_public: bytes

    def apply(self, sock: zmq.Socket[Any]) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server_public


def _folder(folder: str | os.PathLike[str]) -> Path:
    path = Path(folder).expanduser()
    if not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "does not exist"
        raise WireError(f"CURVE key folder {path} {problem}", _FIX_LAYOUT)
    if not os.access(path, os.R_OK | os.X_OK):
        raise WireError(f"CURVE key folder {path} cannot be read", "fix its permissions")
    return path


def load_server_keys(folder: str | os.PathLike[str]) -> ServerKeys:
    """The node's side; refuses a folder it cannot read or one that allows no client."""
    _check_curve_available()
    path = _folder(folder)
    public, secret = _load(path / f"{SERVER}{SECRET_SUFFIX}", secret=True)
    clients = path / CLIENTS
    try:
        names = sorted(p for p in clients.iterdir() if p.name.endswith(PUBLIC_SUFFIX))
    except FileNotFoundError:
        raise WireError(f"CURVE key folder {path} has no {CLIENTS}/ folder of allowed clients", _FIX_LAYOUT) from None
    except NotADirectoryError:
        raise WireError(f"{clients} is a file, not the folder of allowed clients' public keys", _FIX_LAYOUT) from None
    except PermissionError as exc:
        raise WireError(f"allowed-clients folder {clients} cannot be read ({exc.strerror})", "fix its permissions") \
            from exc
    if not names:
        raise WireError(f"{clients} holds no client public key (*{PUBLIC_SUFFIX}): nobody could subscribe",
                        "add one with `perception keys DIR --client NAME`")
    for name in names:
        _load(name, secret=False)  # an unreadable or corrupt key stops start-up instead of being skipped
    assert secret is not None
    return ServerKeys(public=public, secret=secret, clients_dir=clients, client_count=len(names))


def load_client_keys(folder: str | os.PathLike[str], name: str | None = None) -> ClientKeys:
    """The subscriber's side: DIR/server.key and the one (or the named) DIR/NAME.key_secret."""
    _check_curve_available()
    path = _folder(folder)
    server_public, _ = _load(path / f"{SERVER}{PUBLIC_SUFFIX}", secret=False)
    if name is None:
        candidates = sorted(p.name[: -len(SECRET_SUFFIX)] for p in path.glob(f"*{SECRET_SUFFIX}"))
        candidates = [c for c in candidates if c != SERVER]
        if len(candidates) != 1:
            found = ", ".join(candidates) or "none"
            raise WireError(f"CURVE key folder {path} has {len(candidates)} client secret keys ({found})",
                            "keep exactly one NAME.key_secret there (or name the client)")
        name = candidates[0]
    public, secret = _load(path / f"{name}{SECRET_SUFFIX}", secret=True)
    assert secret is not None
    return ClientKeys(public=public, secret=secret, server_public=server_public)


def write_keys(folder: str | os.PathLike[str], client: str = DEFAULT_CLIENT) -> list[Path]:
    """Create the server pair (if the folder has none) and one client pair; never overwrites a key."""
    import zmq.auth

    _check_curve_available()
    if not client or not client.replace("-", "").replace("_", "").replace(".", "").isalnum() or client == SERVER:
        raise WireError(f"client name {client!r} cannot name a key file", "use letters, digits, - _ . (not 'server')")
    path = Path(folder).expanduser()
    clients = path / CLIENTS
    if (clients / f"{client}{PUBLIC_SUFFIX}").exists() or (path / f"{client}{SECRET_SUFFIX}").exists():
        raise WireError(f"client {client!r} already has keys in {path}", "choose another --client name")
    try:
        clients.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        written = []
        if not (path / f"{SERVER}{SECRET_SUFFIX}").exists():
            written += [Path(p) for p in zmq.auth.create_certificates(os.fspath(path), SERVER)]
        public, secret = (Path(p) for p in zmq.auth.create_certificates(os.fspath(path), client))
        public = public.rename(clients / public.name)
        for key in [*written, secret]:
            if key.name.endswith(SECRET_SUFFIX):
                os.chmod(key, 0o600)
    except OSError as exc:
        raise WireError(f"cannot write keys in {path} ({exc.strerror})", "choose a writable folder") from exc
    return [*written, public, secret]
