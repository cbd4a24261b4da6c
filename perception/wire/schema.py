"""Names and numbers of the wire format that every publisher and subscriber share.

docs/protocol.md is the normative description; this module is its single source in code.
"""

from __future__ import annotations

import enum
import re

from perception.wire.errors import DecodeError, WireError

# Major version of the header layout. Additive changes (new keys) keep it; readers ignore
# unknown keys. Removing or changing the meaning of a key bumps it.
SCHEMA_VERSION = 1

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5560"

TOPIC_ROOT = "perception"

_CAMERA_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Kind(str, enum.Enum):
    """The topics of a camera. Each has its own sequence counter (see docs/protocol.md)."""

    FRAME = "frame"
    META = "meta"
    STATUS = "status"
    STATS = "stats"
    IMAGE = "image"  # the input frame as JPEG, for viewers; off unless the node is asked for it


KINDS: tuple[Kind, ...] = tuple(Kind)
# what a subscriber gets unless it asks: images are opt-in, being large and only for viewers
DEFAULT_KINDS: tuple[Kind, ...] = (Kind.FRAME, Kind.META, Kind.STATUS, Kind.STATS)
_KIND_NAMES = frozenset(k.value for k in KINDS)


class State(str, enum.Enum):
    """Node states carried by the status topic."""

    STARTING = "starting"
    WARMING_UP = "warming_up"
    READY = "ready"
    SOURCE_LOST = "source_lost"
    ERROR = "error"
    STOPPED = "stopped"


STATES: tuple[str, ...] = tuple(s.value for s in State)

# id-map dtypes on the wire, always little-endian, row-major (C order).
ID_MAP_DTYPES: tuple[str, ...] = ("uint16", "uint32")


def check_camera(camera: str) -> str:
    """Camera names become topic path segments, so they must not contain '/' or spaces."""
    if not isinstance(camera, str) or not _CAMERA_NAME.match(camera):
        raise WireError(
            f"camera name {camera!r} cannot be used in a topic",
            "use 1-64 characters from A-Z a-z 0-9 _ . - (e.g. cam0, front_left)",
        )
    return camera


def kind_of(name: str) -> Kind:
    try:
        return Kind(name)
    except ValueError:
        raise WireError(f"unknown topic kind {name!r}", f"choose from {', '.join(k.value for k in KINDS)}") from None


def topic(camera: str, kind: Kind | str) -> bytes:
    """`perception/<camera>/<kind>/`: the trailing '/' keeps cam0 from matching cam01."""
    return f"{TOPIC_ROOT}/{check_camera(camera)}/{kind_of(str(getattr(kind, 'value', kind))).value}/".encode()


def camera_prefix(camera: str) -> bytes:
    """Prefix that subscribes to every topic of one camera."""
    return f"{TOPIC_ROOT}/{check_camera(camera)}/".encode()


def parse_topic(raw: bytes) -> tuple[str, Kind]:
    """Camera and kind of a received topic frame; anything else is a WireError."""
    text = raw.decode("ascii", errors="replace")
    parts = text.split("/")
    if (
        len(parts) != 4
        or parts[0] != TOPIC_ROOT
        or parts[3] != ""
        or not _CAMERA_NAME.match(parts[1])
        or parts[2] not in _KIND_NAMES
    ):
        raise DecodeError(
            f"topic {text[:80]!r} is not perception/<camera>/<frame|meta|status|stats|image>/",
            "check that the endpoint is a perception node of this protocol version",
        )
    return parts[1], Kind(parts[2])
