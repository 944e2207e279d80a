"""YAML configuration: loading, and building typed dataclasses from it with clear errors.

One YAML file configures a whole study. Its top-level keys are sections, each owned by the
stage that reads it (``domains``, ``sample``, ``proxy``, ``sweep``, ``fit``, ``optimize``,
``emit``, ``report``) plus ``run_dir``. Each stage module defines a keyword-only dataclass for
its section and builds it with :func:`from_dict`, which rejects unknown keys and wrong types
with the dotted path of the offending key, so that a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from regmix_plugin.errors import ConfigError

T = TypeVar("T")

#: Top-level keys a study config may hold.
SECTIONS = (
    "synthetic",
    "domains",
    "sample",
    "proxy",
    "sweep",
    "fit",
    "optimize",
    "emit",
    "evaluate",
    "report",
)
TOP_LEVEL_KEYS = ("run_dir", *SECTIONS)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping document is a :class:`ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; pass the path of a YAML file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def load_study(path: str | Path) -> dict[str, Any]:
    """Read a study config and check its top-level keys; relative paths stay relative to the file.

    Adds ``_config_dir`` (the folder holding the file) so sections can resolve relative paths.
    """
    data = load_yaml(path)
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {unknown}; allowed: {list(TOP_LEVEL_KEYS)}"
        )
    data["_config_dir"] = str(Path(path).resolve().parent)
    return data


def resolve_path(value: str | Path, base_dir: str | Path) -> Path:
    """A path from a config: absolute as given, relative to the config file's folder otherwise."""
    p = Path(value).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else Path(base_dir) / p))


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, recursively, checking keys and simple types.

    ``where`` is the dotted location used in error messages (for example ``"sample"``).
    Validation beyond types belongs in the dataclass's ``__post_init__``; a ``ValueError`` raised
    there is re-raised as a :class:`ConfigError` naming ``where``.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}: {data!r}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    missing = [
        name
        for name, f in fields.items()
        if name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: required key(s) {missing} missing")
    kwargs = {name: _convert(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {args}"
        )
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value, where)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}: {value!r}")
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}: {value!r}")
        k_tp, v_tp = args if args else (Any, Any)
        return {
            _convert(k_tp, k, f"{where}"): _convert(v_tp, v, f"{where}.{k}")
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        # YAML reads 1e9 as a string and 1.0e9 as a float; accept integral floats and such strings.
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__}: {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    return value


def to_dict(obj: Any) -> Any:
    """The plain-data form of a config dataclass (for writing the resolved config)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
