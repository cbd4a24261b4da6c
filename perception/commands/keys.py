"""`perception keys DIR`: CURVE key pairs for the node and its clients (docs/operations.md)."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "keys",
        help="create CURVE keys: a server pair and one client pair",
        description="Write DIR/server.key, DIR/server.key_secret (created once), DIR/clients/NAME.key and "
        "DIR/NAME.key_secret. Run again with another --client to allow one more client. Nothing is "
        "overwritten. Then: perception run --curve-keys DIR; a client gets server.key and its NAME.key_secret.",
    )
    p.add_argument("folder", metavar="DIR", help="key folder (created if missing)")
    p.add_argument("--client", default=None, help="client name (default: client)")
    p.set_defaults(func=keys)


def keys(args: argparse.Namespace) -> int:
    from perception.wire.curve import DEFAULT_CLIENT, write_keys

    client = args.client or DEFAULT_CLIENT
    for path in write_keys(args.folder, client):
        print(path)
    print(f"perception: give {args.folder}/server.key and {args.folder}/{client}.key_secret to the client; "
          f"keep server.key_secret on the node", file=sys.stderr)
    return 0
