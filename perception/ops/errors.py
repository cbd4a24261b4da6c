"""Errors of the operational side: a port in use, a public bind not allowed, a notify socket that is not there."""

from __future__ import annotations

from perception.core.errors import PerceptionError


class OpsError(PerceptionError):
    """A metrics/viewer listen address or a systemd notify socket that cannot be used."""
