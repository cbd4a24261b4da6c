"""Base of every error a user can cause: each one names the problem and the fix.

The CLI turns these into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class PerceptionError(Exception):
    """A problem with the user's input, environment or configuration."""

    exit_code = 2

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}: {fix}" if fix else problem)


class ConfigError(PerceptionError):
    """A launch file or command-line override that is not valid."""


class FrameError(PerceptionError):
    """One frame could not be processed (e.g. an image the model's preprocessing cannot take).

    The frame is dropped and reported; the stream goes on.
    """


class SourceError(PerceptionError):
    """A source that cannot be opened: unknown scheme, missing file, absent camera, unreadable recording."""

    # False where reopening cannot help (a topic a recording does not have): a camera of a
    # multi-camera node that fails so at start stops the node instead of being retried
    retry_helps = True


class ModelMismatchError(PerceptionError):
    """A model whose inputs or outputs disagree with its card or with what a decoder needs."""


class MissingDependencyError(PerceptionError):
    """An optional package is needed for what was asked and is not installed."""

    def __init__(self, package: str, purpose: str, install: str) -> None:
        super().__init__(f"{purpose} needs the '{package}' package, which is not installed", install)
        self.package = package


def require(module: str, purpose: str, install: str) -> object:
    """Import an optional module at first use, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module.split(".", maxsplit=1)[0], purpose, install) from exc
