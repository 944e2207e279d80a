"""Exception types that users see.

Every error raised for bad input says what was seen, what the limit is, and which setting or
file to change. Programmer errors stay ``assert``/``TypeError``; these are for users.
"""

from __future__ import annotations

from typing import Any


class RegMixError(Exception):
    """Base class of every user-facing error of regmix-plugin."""


class ConfigError(RegMixError, ValueError):
    """A configuration file or value is invalid."""


class DataError(RegMixError, ValueError):
    """Input data (``.bin/.idx`` files, tables, weights) is missing, corrupt or inconsistent."""


class InfeasibleError(RegMixError):
    """The constraints leave nothing to choose from (caps, budgets, too few mixtures)."""


class LaunchError(RegMixError):
    """A launcher could not start, or rejected, the work it was given."""


class MissingDependencyError(RegMixError, ImportError):
    """An optional dependency is not installed; the message holds the ``pip install`` line."""


def require(module: str, pip_name: str | None = None, extra: str | None = None) -> Any:
    """Import an optional dependency, or fail with the install line that fixes it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = (
            f"pip install 'regmix-plugin[{extra}]'"
            if extra
            else f"pip install {pip_name or module}"
        )
        raise MissingDependencyError(
            f"{module!r} is needed for this feature but is not installed ({exc}). Fix: {hint}"
        ) from exc
