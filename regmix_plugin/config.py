"""YAML configuration machinery: strict loading, dotted overrides, typed dataclasses.

One YAML file configures a whole study (:mod:`regmix_plugin.study` builds it into one typed
:class:`~regmix_plugin.study.StudyConfig`). Each section is a keyword-only dataclass defined by the
module that owns it and built with :func:`from_dict`, which rejects unknown keys and wrong types
with the dotted path of the offending key, so that a typo never passes silently. The YAML loader
refuses duplicate keys (plain YAML keeps the last one silently).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from regmix_plugin.errors import ConfigError

T = TypeVar("T")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a mapping holding the same key twice."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if first is not None:
            raise ConfigError(
                f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in the same "
                f"mapping (first on line {first + 1}); YAML would silently keep only the last "
                "one: merge the two or delete one"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of a file the user named; a missing, directory or binary file is an error.

    ``what`` says what the file is for (``"config file"``, ``"weights file"``) in the message.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {str(p)!r} is a directory; pass the path of a file")
    if not p.is_file():
        raise ConfigError(f"{what} {str(p)!r} does not exist; pass the path of a file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {str(p)!r} is not UTF-8 text (byte {exc.start} is "
            f"{exc.object[exc.start]:#x}); pass the YAML/CSV file itself"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} {str(p)!r} cannot be read: {exc.strerror}") from None


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text strictly (duplicate keys are errors); ``source`` names it in messages."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None


def plain_yaml(doc: Any, width: int = 100) -> str:
    """``yaml.safe_dump`` (keys in insertion order) without anchors and aliases: a mapping
    that appears twice in ``doc`` is written out twice, so an artifact's bytes never depend on
    which of its values happen to be one shared object."""
    return str(
        yaml.dump(doc, Dumper=_PlainDumper, sort_keys=False, width=width, allow_unicode=False)
    )


class _PlainDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping strictly; a missing file or a non-mapping document is a ConfigError."""
    data = parse_yaml(read_text_file(path, "config file"), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with dotted ``key.path=value`` overrides applied (values parsed as YAML).

    ``proxy.num_tokens=1e6`` sets ``data["proxy"]["num_tokens"]``; missing intermediate mappings
    are created; the types are checked later, when the section is built, and an unknown key is
    reported there with its dotted path. A malformed override is a :class:`ConfigError`.
    """
    out = copy.deepcopy(dict(data))
    for text in overrides:
        key, sep, raw = text.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p for p in parts):
            raise ConfigError(
                f"--set {text!r}: expected section.key=value (for example "
                "--set proxy.num_tokens=1e6)"
            )
        value = parse_yaml(raw, f"--set {key}") if raw.strip() else ""
        node: dict[str, Any] = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"--set {key}: {where} is {child!r}, not a section; it has no key "
                    f"{parts[depth + 1]!r}"
                )
            node = child
        node[parts[-1]] = value
    return out


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
