"""Errors about model files, model cards and decoder outputs."""

from __future__ import annotations

from perception.core.errors import PerceptionError


class ModelCardError(PerceptionError):
    """A model card that is missing, malformed, or disagrees with its ONNX graph."""


class DecoderError(PerceptionError):
    """Engine outputs that no decoder can make sense of (wrong shapes, NaN, unknown decoder)."""
