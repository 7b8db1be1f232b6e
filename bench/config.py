"""Frozen configuration: one ``Case`` per measured point, one ``Config`` dataclass per sweep with named profiles,
and typed ``--key=value`` overrides (parsed by the field's type, never exec'd)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass
from typing import Any, Iterable


class ConfigError(ValueError):
    """A user-caused configuration problem; the CLI prints it on one line and exits 2."""


@dataclass(frozen=True)
class Case:
    """One measured point of a sweep: the sweep's name plus JSON-able parameters, sorted by key.

    ``id`` is a stable hash of both, so a resumed run recognises the cases it already finished.
    """

    sweep: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, sweep: str, **params: Any) -> "Case":
        for key, value in params.items():
            if isinstance(value, list):
                params[key] = tuple(value)
        return cls(sweep, tuple(sorted(params.items())))

    def __getitem__(self, key: str) -> Any:
        for k, v in self.params:
            if k == key:
                return v
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def as_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def id(self) -> str:
        blob = json.dumps([self.sweep, self.params], sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _parse_scalar(text: str, typ: Any) -> Any:
    if typ is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    if typ in (int, float, str):
        return typ(text)
    raise ValueError(f"unsupported field type {typ!r}")


def parse_value(text: str, typ: Any) -> Any:
    """Parse ``text`` as ``typ``: int, float, bool, str, their Optional, and tuple[X, ...] (comma-separated)."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is tuple:
        inner = args[0]
        return tuple(parse_value(part.strip(), inner) for part in text.split(",") if part.strip())
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        non_none = [a for a in args if a is not type(None)]
        if text.lower() in ("none", "null", ""):
            return None
        return parse_value(text, non_none[0])
    return _parse_scalar(text, typ)


def apply_overrides(cfg: Any, overrides: dict[str, str]) -> Any:
    """Return ``cfg`` with string overrides parsed by each field's declared type; unknown keys are an error."""
    hints = typing.get_type_hints(type(cfg))
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    for raw_key, text in overrides.items():
        key = raw_key.replace("-", "_")
        if key not in fields:
            raise ConfigError(f"unknown option --{raw_key}; known: {', '.join('--' + f.replace('_', '-') for f in sorted(fields))}")
        try:
            changes[key] = parse_value(text, hints[key])
        except ValueError as exc:
            raise ConfigError(f"--{raw_key}={text}: {exc}") from None
    new = dataclasses.replace(cfg, **changes)
    validate = getattr(new, "validate", None)
    if callable(validate):
        validate()
    return new


def parse_kv_args(args: Iterable[str]) -> dict[str, str]:
    """``['--seq-lens=128,256', '--device', 'cpu']`` -> ``{'seq-lens': '128,256', 'device': 'cpu'}``."""
    out: dict[str, str] = {}
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--"):
            raise ConfigError(f"unexpected argument {item!r}; options look like --key=value")
        key, sep, value = item[2:].partition("=")
        if not sep:
            if i + 1 >= len(items) or items[i + 1].startswith("--"):
                raise ConfigError(f"option --{key} needs a value")
            value = items[i + 1]
            i += 1
        out[key] = value
        i += 1
    return out
