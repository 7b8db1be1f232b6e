"""Frozen configuration: one ``Case`` per measured point; the shared measurement config (``RunConfig`` and its
``ShapeConfig`` / ``MeasureConfig`` layers) that every sweep's Config extends, with one validation; typed
``--key=value`` overrides (parsed by the field's type, never exec'd) and a sweep's ``--help`` generated from its
Config's fields and their trailing comments, so the help and the code cannot drift."""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Optional


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
            known = ", ".join("--" + f.replace("_", "-") for f in sorted(fields))
            raise ConfigError(f"unknown option --{raw_key}; known: {known}")
        try:
            changes[key] = parse_value(text, hints[key])
        except ValueError as exc:
            raise ConfigError(f"--{raw_key}={text}: {exc}; expected {_type_name(hints[key])}") from None
    new = dataclasses.replace(cfg, **changes)
    new.validate()
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


# ------------------------------------------------------------------------------------------------------------------
# The shared measurement config: what every sweep's Config extends (a trailing ``# comment`` is a field's --help).

MIN_MEM_CAP_BYTES = 64 * 1024 ** 2  # below this a worker child cannot even import torch


@dataclass(frozen=True)
class RunConfig:
    """What the harness needs of every sweep: threads per worker, its time cap and memory cap."""

    threads: int = 2  # torch threads per worker child
    time_cap_s: float = 120.0  # seconds one case may run before its child is killed (status timeout)
    mem_cap_bytes: Optional[int] = None  # address-space cap of a worker child; none: the Worker's default

    def validate(self) -> None:
        """Raise a one-line ``ConfigError`` on the first problem; subclasses call this first, then add theirs."""
        if self.threads < 1:
            raise ConfigError("--threads must be >= 1")
        if not self.time_cap_s > 0:
            raise ConfigError("--time-cap-s must be > 0")
        if self.mem_cap_bytes is not None and self.mem_cap_bytes < MIN_MEM_CAP_BYTES:
            raise ConfigError(f"--mem-cap-bytes={self.mem_cap_bytes} is below the 64 MiB a case needs to run")

    @property
    def run_device(self) -> str:
        """The device the cases run on (results file name, manifest); training sweeps run on the CPU."""
        return "cpu"

    @property
    def seed_list(self) -> list[int]:
        """The seeds this config declares, for the manifest (a Config with a ``seeds`` tuple returns it)."""
        return []


@dataclass(frozen=True)
class ShapeConfig(RunConfig):
    """The attention inputs' shape (B, H, D), dtype and device, for sweeps that time or compare attention."""

    batch: int = 1  # B, sequences per call
    heads: int = 4  # H, attention heads
    head_dim: int = 64  # D, dims per head
    dtype: str = "float32"  # float32 | float64 | bfloat16 | float16
    device: str = "cpu"  # cpu | cuda | cuda:N

    def validate(self) -> None:
        super().validate()
        from bench.measure import DTYPES

        for label in ("batch", "heads", "head_dim"):
            if getattr(self, label) < 1:
                raise ConfigError(f"--{label.replace('_', '-')} must be >= 1")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; known: {', '.join(DTYPES)}")
        validate_device(self.device)

    @property
    def run_device(self) -> str:
        return self.device


@dataclass(frozen=True)
class MeasureConfig(ShapeConfig):
    """One seeded measurement per case: the shape config plus the seed of its inputs."""

    seed: int = 0  # seed of the inputs (and of a variant's own random parts)

    @property
    def seed_list(self) -> list[int]:
        return [self.seed]


@dataclass(frozen=True)
class TaskPoolConfig(RunConfig):
    """Models trained on nested prefixes of one seeded pool of a task, scored on one val and one test set."""

    seeds: tuple[int, ...] = (0, 1, 2)  # model init and batch order
    data_seed: int = 0  # the one pool, val and test set
    batch_size: int = 32  # sequences per training step
    lr: float = 3e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.1  # AdamW weight decay
    warmup: int = 25  # linear warm-up steps
    eval_every: int = 100  # steps between validation evaluations
    n_eval: int = 512  # validation and test examples each
    token_shift: bool = True  # mix each token with its predecessor first
    seq_len: int = 32  # task sequence length T
    text_pool_bytes: int = 2_000_000  # text_bytes: bytes of the corpus pool
    motif_vocab: int = 16  # local_motif vocabulary size
    motif_len: int = 3  # local_motif: tokens per motif
    motif_classes: int = 4  # local_motif: classes, the motifs and "none" (4: chance 0.25)
    threads: int = 1  # torch threads per worker child (1: see docs/sweeps.md)
    time_cap_s: float = 300.0  # seconds one case may run before its child is killed (status timeout)

    def validate(self) -> None:
        super().validate()
        require_nonempty(self, ("seeds",))
        if any(s < 0 for s in self.seeds) or self.data_seed < 0:
            raise ConfigError("--seeds and --data-seed must be >= 0")
        require_positive(self, ("seq_len",))

    @property
    def seed_list(self) -> list[int]:
        return list(self.seeds)


def require_nonempty(cfg: Any, labels: Iterable[str]) -> None:
    """``ConfigError`` for the first of ``labels`` whose tuple in ``cfg`` is empty."""
    for label in labels:
        if not getattr(cfg, label):
            raise ConfigError(f"--{label.replace('_', '-')} must not be empty")


def require_positive(cfg: Any, labels: Iterable[str]) -> None:
    """``ConfigError`` for the first of ``labels`` whose value in ``cfg`` is below 1."""
    for label in labels:
        if getattr(cfg, label) < 1:
            raise ConfigError(f"--{label.replace('_', '-')} must be >= 1, got {getattr(cfg, label)}")


def validate_device(device: str) -> None:
    """cpu | cuda | cuda:N, and CUDA only where torch sees a GPU."""
    import torch

    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"unknown device {device!r}; use cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} is not available here (torch.cuda.is_available() is False)")


# ------------------------------------------------------------------------------------------------------------------
# --help from the Config itself.

def _field_docs(cls: type) -> dict[str, str]:
    """``name -> trailing comment`` of each field line in ``cls`` and its bases (the subclass's comment wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for match in _FIELD_LINE.finditer(source):
            docs[match["name"]] = match["doc"].strip()
    return docs


_FIELD_LINE = re.compile(r"^    (?P<name>\w+): [^\n#]*?#\s*(?P<doc>[^\n]*)$", re.MULTILINE)


def _type_name(typ: Any) -> str:
    return getattr(typ, "__name__", None) if not typing.get_args(typ) else str(typ).replace("typing.", "")


def _flag_value(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or '""'
    return str(value)


def fields_help(cfg: Any) -> str:
    """One line per field of ``cfg``: --flag, type, the value in ``cfg``, and its doc (the field's comment)."""
    hints = typing.get_type_hints(type(cfg))
    docs = _field_docs(type(cfg))
    rows = [(f"--{f.name.replace('_', '-')}", _type_name(hints[f.name]), _flag_value(getattr(cfg, f.name)),
             docs.get(f.name, "")) for f in dataclasses.fields(cfg)]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows)
