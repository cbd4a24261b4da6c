"""Errors about sources: bad URIs, missing files, cameras that are not there or vanish."""

from __future__ import annotations

from perception.errors import PerceptionError


class SourceError(PerceptionError):
    """A source that cannot be opened: unknown scheme, missing file, absent camera."""


class SourceLost(Exception):
    """A live source stopped delivering; the capture thread reconnects with backoff."""
