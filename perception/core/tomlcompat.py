"""tomllib on 3.11+, tomli on 3.10 (Jetson images)."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from pathlib import Path
from typing import Any

from perception.core.errors import PerceptionError

__all__ = ["read_toml", "tomllib"]


def read_toml(path: Path, what: str, error: type[PerceptionError], fix_missing: str) -> dict[str, Any]:
    """Parse a user's TOML file; a missing or malformed file raises `error` naming it."""
    if not path.is_file():
        raise error(f"{what} {path} does not exist", fix_missing)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid TOML ({exc})", "fix the syntax") from exc
    except RecursionError:  # tomllib recurses per nesting level: a 5,000-deep array exhausts the stack
        raise error(f"{what} {path} nests arrays or tables too deeply",
                    "flatten it: a launch file needs two levels") from None
