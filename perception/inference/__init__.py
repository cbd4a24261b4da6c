"""Inference engines behind one protocol, chosen by name from a registry."""

from perception.inference.engine import Engine, EngineOptions, TensorSpec, available_engines, open_engine

__all__ = ["Engine", "EngineOptions", "TensorSpec", "available_engines", "open_engine"]
