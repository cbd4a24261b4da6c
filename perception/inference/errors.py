"""Errors raised when an engine cannot be opened or run."""

from __future__ import annotations

from perception.core.errors import PerceptionError


class EngineError(PerceptionError):
    """An engine that is unknown, cannot load its model, or fails at run time."""
