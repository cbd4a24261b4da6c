"""Errors of the wire: bad endpoints, and messages that cannot be decoded."""

from __future__ import annotations

from perception.core.errors import PerceptionError


class WireError(PerceptionError):
    """A ZeroMQ endpoint or a wire message that cannot be used."""


class EndpointInUseError(WireError):
    """Another process already listens on the endpoint."""


class DecodeError(WireError):
    """A received message is not a valid perception wire message (garbage, truncated, wrong schema)."""


class SchemaVersionError(DecodeError):
    """A message written with a schema major version this client does not understand."""


class LosslessTimeoutError(WireError):
    """A lock-step (lossless) send waited longer than its timeout for a subscriber to take it."""
