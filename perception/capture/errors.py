"""Errors about sources: bad URIs, missing files, cameras that are not there or vanish."""

from __future__ import annotations

from perception.core.errors import SourceError

__all__ = ["SourceError", "SourceLost"]


class SourceLost(Exception):
    """A live source stopped delivering; the capture thread reconnects with backoff."""
