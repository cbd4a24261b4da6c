"""A classic card's [params]: typed, range-checked reads; a key no method reads is refused."""

from __future__ import annotations

import math
from typing import Any

from perception.models.card import ClassInfo, ModelCard
from perception.models.errors import ModelCardError


class Params:
    """Each read names the card, the key and the valid range in its error; finish() refuses leftovers."""

    def __init__(self, card: ModelCard, raw: dict[str, Any] | None = None, where: str = "[params]") -> None:
        self.card = card
        self.raw = dict(card.params if raw is None else raw)
        self.where = f"model card {card.path or card.name} {where}"
        self._read: set[str] = set()

    def _get(self, key: str, default: Any) -> Any:
        self._read.add(key)
        return self.raw.get(key, default)

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ModelCardError(f"{self.where} {key} = {value!r} is not a number",
                                 f"use a number in {low:g}..{high:g}")
        if not low <= value <= high:
            raise ModelCardError(f"{self.where} {key} = {value:g} is out of range", f"use {low:g}..{high:g}")
        return float(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelCardError(f"{self.where} {key} = {value!r} is not a whole number", f"use {low}..{high}")
        if not low <= value <= high:
            raise ModelCardError(f"{self.where} {key} = {value} is out of range", f"use {low}..{high}")
        return value

    def odd_kernel(self, key: str, default: int) -> int:
        """A morphology kernel size: 0 (off) or odd 1..31."""
        value = self.integer(key, default, 0, 31)
        if value and value % 2 == 0:
            raise ModelCardError(f"{self.where} {key} = {value} is even", "kernel sizes are odd (1, 3, 5, ...) or 0")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ModelCardError(f"{self.where} {key} = {value!r} is not a boolean", "write true or false")
        return value

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self._get(key, default)
        if value not in allowed:
            raise ModelCardError(f"{self.where} {key} = {value!r} is not supported", f"use one of {list(allowed)}")
        return str(value)

    def triple(self, key: str, low: float, high: float) -> tuple[float, float, float]:
        value = self._get(key, None)
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            raise ModelCardError(f"{self.where} {key} = {value!r} is not 3 numbers", f"e.g. {key} = [0, 40, 40]")
        if not all(low <= v <= high for v in value):
            raise ModelCardError(f"{self.where} {key} = {value} is out of range", f"each in {low:g}..{high:g}")
        return float(value[0]), float(value[1]), float(value[2])

    def tables(self, key: str) -> list[dict[str, Any]]:
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ModelCardError(f"{self.where} {key} must be a list of tables", f"write [[params.{key}]] entries")
        return value

    def class_named(self, key: str, default: str | None, thing: bool) -> ClassInfo:
        """A class of the card by name, with the thing/stuff flag this use needs."""
        name = self._get(key, default)
        for info in self.card.classes:
            if info.name == name:
                if info.thing != thing:
                    kind = "thing" if thing else "stuff"
                    raise ModelCardError(f"{self.where} {key} = {name!r} must be a {kind} class",
                                         f"set thing = {str(thing).lower()} for it in [[classes]]")
                return info
        raise ModelCardError(f"{self.where} {key} = {name!r} is not a class of the card",
                             f"use one of {self.card.class_names}")

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self._read)
        if unknown:
            raise ModelCardError(f"{self.where} has unknown keys {unknown}", f"valid keys: {sorted(self._read)}")
