"""Configuration is data: dataclasses built from YAML or dicts, with errors naming the field.

Every component (encoder, store, ingestion, generator, retrieval, training) declares a
dataclass that checks its own values in ``__post_init__``, so an object that exists is
valid, however it was made. :func:`from_dict` builds one from a plain mapping,
recursing into nested dataclass fields, and rejects unknown or mistyped keys with the
dotted path of the offending field and the file it came from
(``configs/cpu.yaml: store.hnsw.m: ...``), so a typo in a YAML config fails loudly
instead of being silently ignored. :func:`override` applies changes (command-line
flags) through the same checks.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from .errors import ConfigError, locate

T = TypeVar("T")

__all__ = ["ConfigError", "at_least", "load_yaml", "from_dict", "from_yaml", "override", "to_dict"]


def at_least(obj: Any, minimum: int | float, *names: str) -> None:
    """Check, in ``__post_init__``, that fields ``names`` of ``obj`` are ``>= minimum`` (``None`` passes).

    Raises :class:`ConfigError` naming the first field that is not.
    """
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < minimum:
            raise ConfigError(f"must be >= {minimum}, got {value}", name)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping: PyYAML keeps the last
    one silently, so a setting repeated further down a config would quietly replace the first."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    merges = any(key.tag == "tag:yaml.org,2002:merge" for key, _ in node.value)  # `<<:` may be overridden
    seen: dict[Any, int] = {}
    for key_node, _ in [] if merges else node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            repeated = key in seen
        except TypeError:  # an unhashable key: construct_mapping reports it
            break
        if repeated:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found key {key!r} a second time (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` with a clear error when it is missing, not a mapping, or
    repeats a key within one mapping."""
    path = Path(path)
    if not path.is_file():
        from .errors import MissingFileError

        raise MissingFileError(path, "config file")
    from .io import open_text

    try:
        with open_text(path) as fh:  # bytes that are not UTF-8: a RowError naming the line
            data = yaml.load(fh.read(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:  # pragma: no cover - message passthrough
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` against the annotation ``tp``; ``where`` names the field."""
    if tp is Any or tp is typing.Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where, nested=True)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, typing.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        return Path(value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "", nested: bool = False) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise :class:`ConfigError`.

    ``where`` locates the data in error messages: a source (``"configs/cpu.yaml"``) or a
    source and section (``"configs/cpu.yaml: generator"``), or with ``nested`` a bare section
    path (``"generator.prompt"``); see :func:`ret2vqa.errors.locate`.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown field for {cls.__name__} (known: {', '.join(sorted(fields))})",
            locate(where, str(unknown[0]), nested),
        )
    missing = [f.name for f in fields.values() if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        raise ConfigError("required", locate(where, missing[0], nested))
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], locate(where, name, nested))
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a check in __post_init__: say which file and section
        raise exc.within(where, nested) from None


def from_yaml(cls: type[T], path: str | Path, section: str | None = None) -> T:
    """Build dataclass ``cls`` from a YAML file, optionally from one top-level ``section``."""
    data = load_yaml(path)
    where = str(path)
    if section is not None:
        if section not in data:
            raise ConfigError(f"{path}: missing section '{section}'")
        data = data[section] or {}
        where = f"{path}: {section}"
    return from_dict(cls, data, where=where)


def override(obj: T, changes: Mapping[str, Any], where: str = "", nested: bool = False) -> T:
    """A copy of dataclass ``obj`` with ``changes`` applied and every check run again.

    Keys are dotted paths (``{"store.path": "data/q", "encoder.device": "cpu"}``);
    ``None`` values are skipped, so unset command-line flags change nothing. Values are
    type-checked like YAML values, and errors name ``where`` (e.g. ``"--store"``) and the
    field. Nested sections are replaced, not mutated: ``obj`` itself is left as it was.
    """
    grouped: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None:
            continue
        head, _, rest = key.partition(".")
        if rest:
            grouped.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    if not grouped and not direct:
        return obj
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj) if f.init}
    updates: dict[str, Any] = {}
    for name in [*direct, *grouped]:
        if name not in names:
            raise ConfigError(f"unknown field for {type(obj).__name__}", locate(where, name, nested))
    for name, value in direct.items():
        updates[name] = _coerce(value, hints[name], locate(where, name, nested))
    for name, sub in grouped.items():
        current = updates.get(name, getattr(obj, name))
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{name} is not a section", locate(where, name, nested))
        updates[name] = override(current, sub, locate(where, name, nested), nested=True)
    try:
        return dataclasses.replace(obj, **updates)
    except ConfigError as exc:
        raise exc.within(where, nested) from None


def to_dict(obj: Any) -> Any:
    """A dataclass (possibly nested) as plain YAML/JSON-friendly data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
