"""Plugins by name: one typed registry for sources, engines, decoders, trackers and id-map codecs.

Every registry maps a name to a factory (a class or a function) that builds one object of
its protocol. Factories are named by "module:attr" strings and imported on first use, so an
optional backend (TensorRT, rosbags, lz4) costs nothing until asked for, and naming a module
is not an import edge between layers.

Names come from, first to last: an environment variable of "name=module:attr,..." entries
(where a registry has one; child processes inherit it), the built-ins and `register()`, and
the `importlib.metadata` entry points of the registry's group (third-party packages). A name
that is not found lists the valid ones; a factory that does not load, is not callable or
builds something that does not satisfy the protocol is refused with the name and the target.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from perception.core.errors import PerceptionError

T = TypeVar("T")

# the entry-point groups a third-party package declares its plugins in (docs/architecture.md)
ENTRY_POINT_GROUPS = ("perception.sources", "perception.engines", "perception.decoders",
                      "perception.trackers", "perception.codecs", "perception.classic")


def _choose_one_of(names: list[str]) -> str:
    return f"choose one of {', '.join(names)}"


class Registry(Generic[T]):
    """name -> factory of T.

    kind names an entry in messages ("engine"); protocol is the runtime_checkable Protocol (or
    class) every built object must satisfy; error is the PerceptionError subclass raised;
    hint turns the valid names into the fix of an unknown-name error.
    """

    def __init__(self, kind: str, protocol: type, error: type[PerceptionError],
                 builtins: Mapping[str, str | Callable[..., T]], *,
                 group: str, variable: str | None = None,
                 hint: Callable[[list[str]], str] = _choose_one_of) -> None:
        if group not in ENTRY_POINT_GROUPS:
            raise ValueError(f"entry-point group {group!r} is not one of {ENTRY_POINT_GROUPS}")
        self.kind = kind
        self.protocol = protocol
        self.error = error
        self.group = group
        self.variable = variable
        self._hint = hint
        self._targets: dict[str, str | Callable[..., T]] = dict(builtins)
        self._loaded: dict[str, Callable[..., T]] = {}  # by target, so a changed variable resolves anew
        self._plugins: dict[str, str] | None = None  # entry points, read on first need

    def register(self, name: str, target: str | Callable[..., T]) -> None:
        """Add (or replace) a factory: a "module:attr" string, or the factory itself."""
        self._targets[name] = target

    def refresh(self) -> None:
        """Read the entry points again at next use (after installing or removing a package)."""
        self._plugins = None

    def names(self) -> list[str]:
        return sorted({**self._entry_points(), **self._targets, **self._from_variable()})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._target(name) is not None

    def unknown(self, name: str, where: str = "") -> PerceptionError:
        """The error for a name that is not registered, listing the valid ones."""
        return self.error(f"unknown {self.kind} {name!r}{where}", self._hint(self.names()))

    def load(self, name: str) -> Callable[..., T]:
        """The factory registered as name, imported on first use."""
        target = self._target(name)
        if target is None:
            self.refresh()  # a package installed since the first look may provide it
            target = self._target(name)
        if target is None:
            raise self.unknown(name)
        if not isinstance(target, str):
            return self._checked_factory(name, target, target)
        factory = self._loaded.get(target)
        if factory is None:
            factory = self._loaded[target] = self._checked_factory(name, target, _import(target, self, name))
        return factory

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        """Build the object registered as name; it must satisfy the registry's protocol."""
        built = self.load(name)(*args, **kwargs)
        if not isinstance(built, self.protocol):
            missing = [m for m in _members(self.protocol) if not hasattr(built, m)]
            raise self.error(f"{self.kind} {name!r} built a {type(built).__name__}, which is not a "
                             f"{self.protocol.__name__}", f"give it {', '.join(missing) or 'the protocol members'}")
        return built

    def _target(self, name: str) -> str | Callable[..., T] | None:
        for table in (self._from_variable(), self._targets, self._entry_points()):
            if name in table:
                return table[name]
        return None

    def _checked_factory(self, name: str, target: object, factory: object) -> Callable[..., T]:
        if not callable(factory):
            raise self.error(f"{self.kind} {name!r} points at {target!r}, which is a {type(factory).__name__}, "
                             "not a class or function", f"point it at a factory of {self.protocol.__name__}")
        return factory

    def _entry_points(self) -> dict[str, str]:
        if self._plugins is None:
            self._plugins = {ep.name: ep.value for ep in entry_points(group=self.group)}
        return self._plugins

    def _from_variable(self) -> dict[str, str]:
        if self.variable is None:
            return {}
        entries: dict[str, str] = {}
        for entry in filter(None, (e.strip() for e in os.environ.get(self.variable, "").split(","))):
            name, sep, target = entry.partition("=")
            if not sep or ":" not in target:
                raise self.error(f"{self.variable} entry {entry!r} is malformed", "write name=module:attr")
            entries[name.strip()] = target.strip()
        return entries


def _import(target: str, registry: Registry[Any], name: str) -> object:
    module_name, _, attr = target.partition(":")
    try:
        found: object = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as exc:
        where = f"the {registry.variable} entry, the entry point" if registry.variable else "the entry point"
        raise registry.error(f"{registry.kind} {name!r} points at {target!r}, which cannot be loaded ({exc})",
                             f"fix {where} or install the module") from exc
    return found


def _members(protocol: type) -> list[str]:
    """The attributes a Protocol asks for, to name what a plugin lacks."""
    names: list[str] = []
    for base in protocol.__mro__:
        if base in (object,) or base.__name__ in ("Protocol", "Generic"):
            continue
        for member in [*getattr(base, "__annotations__", {}), *vars(base)]:
            public = not member.startswith("_") or member in ("__enter__", "__exit__", "__call__")
            if public and member not in names:
                names.append(member)
    return names
