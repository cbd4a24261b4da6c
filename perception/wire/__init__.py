"""The wire: ZeroMQ publisher and subscriber client for perception results (docs/protocol.md).

Kept import-light: Publisher and Subscriber live in perception.wire.publisher / .subscriber.
"""

from perception.wire.errors import DecodeError, EndpointInUseError, SchemaVersionError, WireError
from perception.wire.schema import DEFAULT_ENDPOINT, SCHEMA_VERSION

__all__ = [
    "DEFAULT_ENDPOINT",
    "SCHEMA_VERSION",
    "DecodeError",
    "EndpointInUseError",
    "SchemaVersionError",
    "WireError",
]
