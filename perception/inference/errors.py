"""Errors raised when an engine cannot be opened or run."""

from __future__ import annotations

from perception.core.errors import PerceptionError


class EngineError(PerceptionError):
    """An engine that is unknown, cannot load its model, or fails at run time."""


class EngineFailed(EngineError):
    """The engine failed at run time in a way the next frame would repeat (ONNX Runtime's own run
    error on a valid input, a TensorRT enqueue that fails): the node publishes `error` and exits 3,
    so its supervisor (systemd's Restart=on-failure) starts it again. Exit 2 stays for user errors,
    which the unit does not restart."""

    exit_code = 3
