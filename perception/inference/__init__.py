"""Inference engines behind one protocol, chosen by name from a registry."""

from perception.inference.engine import Engine, EngineOptions, available_engines, open_engine

__all__ = ["Engine", "EngineOptions", "available_engines", "open_engine"]
