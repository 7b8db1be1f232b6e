"""The one interface every attention mechanism implements, the registry, and exact reference attention.

Dims everywhere: B batch, H heads, T sequence length, D head dim, r rank / features / landmarks.

A variant is a class ``FooAttention(Attention)`` with a class attribute ``spec: AttentionSpec``, decorated with
``@register``. Construction is ``(d_head=, n_heads=, causal=, max_seq_len=, **params)``; ``params`` are checked
against ``spec.default_params`` (an unknown key raises ``TypeError``; a bad value ``ValueError``; an unsupported
combination ``NotImplementedError``). ``forward(q, k, v, key_valid=None)`` validates its inputs here, once, and
then calls the subclass's ``_attend``.

Conventions shared by every variant:
- ``key_valid`` is (B, T) bool, True for real tokens. Padded keys get zero weight. The output at a query that
  sees no valid key at all (a fully padded row; causal: none at or before it; sparse: none in its pattern) is
  finite and otherwise unspecified: it may depend on keys the query does not see, padded or later ones
  (``reference_attention`` gives zeros there). ``tests/reliability/test_fuzz.py`` holds every variant to this.
- Causal means query i sees keys j <= i.
- ``spec.analytic_flops`` counts matrix-multiply FLOPs (2·m·k·n per matmul) exactly as
  ``torch.utils.flop_counter.FlopCounterMode`` does on the variant's math path; element-wise work (softmax, exp)
  is not counted, by FlopCounterMode or by us.
- ``spec.analytic_bytes`` is the analytic peak of the forward's intermediates (beyond q, k, v and the output),
  in bytes, for the given element size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Generic, Mapping, TypeVar

import torch
from torch import Tensor, nn

FAMILIES = ("full", "linear", "sparse", "low_rank")


class UnknownVariantError(LookupError):
    """Raised by ``variants.get`` and ``variants.get_model`` for a name that is not registered."""


E = TypeVar("E")


class Registry(Generic[E]):
    """Entries by name, for attention variants and for models: a name registered twice raises ``ValueError``, an
    unknown name a one-line ``UnknownVariantError`` that lists the known ones."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, E] = {}

    def add(self, name: str, entry: E) -> E:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> E:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise UnknownVariantError(f"unknown {self.what} {name!r}; known: {known}") from None

    def names(self, keep: Callable[[E], bool] | None = None) -> list[str]:
        """Registered names in registration order, those ``keep`` accepts when given."""
        return [n for n, e in self._entries.items() if keep is None or keep(e)]


def frozen_params(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of a spec's ``default_params``."""
    return MappingProxyType(dict(params))


def resolve_params(owner: str, defaults: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` overlaid with ``params``; unknown keys raise a one-line TypeError naming ``owner``."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise TypeError(f"{owner}: unknown parameter(s) {', '.join(unknown)}; known: {known}")
    return {**defaults, **params}


@dataclass(frozen=True)
class Paper:
    title: str
    year: int
    arxiv: str

    def __str__(self) -> str:
        return f"{self.title} ({self.year}, arXiv:{self.arxiv})"


@dataclass(frozen=True)
class AttentionSpec:
    """What a variant declares about itself; used by the tests, `list`, the report and the regression gate.

    ``time_exponent`` / ``memory_exponent`` are the declared growth in T (2 for quadratic, 1 for linear) that
    measured exponents are checked against. The formulas ``flops(B, H, T, D, *, causal, **params)`` and
    ``memory_bytes(B, H, T, D, *, causal, elem_bytes, **params)`` name exactly the keys of ``default_params``
    and declare no defaults: call them through ``analytic_flops`` / ``analytic_bytes``, which fill the defaults in.
    ``fixed_length``: the variant owns parameters sized by ``max_seq_len`` and rejects T > max_seq_len.
    ``causal_skips_masked``: in causal mode the kernel skips the masked upper triangle (a fused kernel's blocks
    above the diagonal) rather than computing and masking it; ``flops`` stays the count of the math path (what
    ``FlopCounterMode`` sees) and ``executed_flops`` is what the kernel does. False: ``flops`` is already what
    runs (the kernel computes and masks, or its formula counts only the blocks it computes, as the sparse and
    linear variants' do).
    """

    name: str
    family: str
    time_complexity: str
    memory_complexity: str
    exact: bool
    supports_causal: bool
    supports_key_valid: bool
    flops: Callable[..., int]
    memory_bytes: Callable[..., int]
    paper: Paper | None = None
    default_params: Mapping[str, Any] = field(default_factory=dict)
    time_exponent: float = 2.0
    memory_exponent: float = 2.0
    fixed_length: bool = False
    causal_skips_masked: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"spec {self.name!r}: family {self.family!r} not in {FAMILIES}")
        if not self.name.startswith(self.family + "_"):
            raise ValueError(f"spec {self.name!r}: registry names are '<family>_<method>'")
        object.__setattr__(self, "default_params", frozen_params(self.default_params))

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``params``; unknown keys raise a one-line TypeError."""
        return resolve_params(self.name, self.default_params, params)

    def analytic_flops(self, B: int, H: int, T: int, D: int, *, causal: bool = False, **params: Any) -> int:
        """``flops`` at this shape with ``params`` over the defaults."""
        return int(self.flops(B, H, T, D, causal=causal, **self.resolve_params(params)))

    def executed_flops(self, B: int, H: int, T: int, D: int, *, causal: bool = False, **params: Any) -> int:
        """The FLOPs the kernel executes: ``analytic_flops``, except T(T+1)/2 of the T² (query, key) pairs for a
        causal kernel that skips masked work (``causal_skips_masked``; its count is all T×T products)."""
        flops = self.analytic_flops(B, H, T, D, causal=causal, **params)
        return flops * (T + 1) // (2 * T) if causal and self.causal_skips_masked else flops

    def analytic_bytes(self, B: int, H: int, T: int, D: int, *, causal: bool = False, elem_bytes: int = 4,
                       **params: Any) -> int:
        """``memory_bytes`` at this shape and element size with ``params`` over the defaults."""
        return int(self.memory_bytes(B, H, T, D, causal=causal, elem_bytes=elem_bytes, **self.resolve_params(params)))


_VARIANTS: Registry[type["Attention"]] = Registry("variant")


def register(cls: type["Attention"]) -> type["Attention"]:
    """Class decorator: add a variant to the registry under ``cls.spec.name``. Duplicate names raise."""
    spec = getattr(cls, "spec", None)
    if not isinstance(spec, AttentionSpec):
        raise TypeError(f"{cls.__name__} needs a class attribute `spec: AttentionSpec` to be registered")
    return _VARIANTS.add(spec.name, cls)


def unregister(name: str) -> None:
    """Remove a variant (tests register throw-away variants and take them out again)."""
    _VARIANTS.remove(name)


def get(name: str) -> type["Attention"]:
    return _VARIANTS.get(name)


def names(family: str | None = None) -> list[str]:
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return sorted(_VARIANTS.names(None if family is None else lambda c: c.spec.family == family))


def specs() -> list[AttentionSpec]:
    return [get(n).spec for n in names()]


def create(name: str, **kwargs: Any) -> "Attention":
    """``get(name)(**kwargs)``: build a registered variant by name."""
    return get(name)(**kwargs)


class Attention(nn.Module):
    """Base class: validates construction and inputs; subclasses implement ``_attend``."""

    spec: ClassVar[AttentionSpec]

    def __init__(self, *, d_head: int, n_heads: int, causal: bool = False, max_seq_len: int, **params: Any):
        super().__init__()
        self.params = self.spec.resolve_params(params)
        for label, value in (("d_head", d_head), ("n_heads", n_heads), ("max_seq_len", max_seq_len)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{self.spec.name}: {label} must be a positive int, got {value!r}")
        if causal and not self.spec.supports_causal:
            raise NotImplementedError(f"{self.spec.name} does not support causal attention")
        self.d_head, self.n_heads, self.causal, self.max_seq_len = d_head, n_heads, bool(causal), max_seq_len

    def extra_repr(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"d_head={self.d_head}, n_heads={self.n_heads}, causal={self.causal}" + (f", {params}" if params else "")

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None = None) -> Tensor:
        check_inputs(self, q, k, v, key_valid)
        return self._attend(q, k, v, key_valid)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def effective_map(self, q: Tensor, k: Tensor, key_valid: Tensor | None = None) -> Tensor:
        """The (B, H, T, T) matrix M with output = M @ V, for small T (opt-in; the forward never builds it).

        This default reads M off the variant's own forward, applied to unit value vectors (D columns of the
        identity at a time): exact for every mechanism whose output is linear in V for fixed q, k, as all the
        registered ones are (Linformer's and Nyström's maps are such products). Families that have M in closed
        form (softmax weights, normalised feature products) override it.
        """
        check_inputs(self, q, k, k, key_valid)
        B, H, T, D = q.shape
        eye = torch.eye(T, dtype=q.dtype, device=q.device).expand(B, H, T, T)  # value j = unit vector e_j
        cols = []
        for start in range(0, T, D):
            unit = eye[..., start:start + D]
            pad = D - unit.shape[-1]  # the last block padded with zero columns to width D
            unit = torch.nn.functional.pad(unit, (0, pad)) if pad else unit
            cols.append(self._attend(q, k, unit.contiguous(), key_valid)[..., :D - pad])  # (B, H, T, <=D)
        return torch.cat(cols, dim=-1)  # (B, H, T, T): row i = the weights query i gives each value j

    def flops(self, B: int, T: int) -> int:
        return self.spec.analytic_flops(B, self.n_heads, T, self.d_head, causal=self.causal, **self.params)

    def memory_bytes(self, B: int, T: int, elem_bytes: int = 4) -> int:
        return self.spec.analytic_bytes(B, self.n_heads, T, self.d_head, causal=self.causal,
                                        elem_bytes=elem_bytes, **self.params)


def check_inputs(attn: Attention, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None) -> None:
    """One-line errors for every input a user can get wrong."""
    name = attn.spec.name
    if q.dim() != 4:
        raise ValueError(f"{name}: q must be (B, H, T, D), got shape {tuple(q.shape)}")
    if q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"{name}: q, k, v shapes differ: {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise TypeError(f"{name}: q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"{name}: q, k, v are on different devices")
    B, H, T, D = q.shape
    if H != attn.n_heads or D != attn.d_head:
        raise ValueError(f"{name}: built for H={attn.n_heads}, D={attn.d_head}, got H={H}, D={D}")
    if T < 1:
        raise ValueError(f"{name}: sequence length T must be >= 1, got {T}")
    if attn.spec.fixed_length and T > attn.max_seq_len:
        raise ValueError(f"{name}: T={T} exceeds max_seq_len={attn.max_seq_len} (fixed-length variant)")
    if key_valid is not None:
        if not attn.spec.supports_key_valid:
            raise NotImplementedError(f"{name} does not support key_valid (padding masks)")
        if key_valid.shape != (B, T):
            raise ValueError(f"{name}: key_valid must be (B, T) = {(B, T)}, got {tuple(key_valid.shape)}")
        if key_valid.dtype != torch.bool:
            raise TypeError(f"{name}: key_valid must be torch.bool, got {key_valid.dtype}")


def check_positive(name: str, **values: int) -> None:
    """Validate budget params (window, rank, landmarks, features ...): positive ints, one-line error."""
    for label, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: {label} must be an int >= 1, got {value!r}")


# ---------------------------------------------------------------------------------------------- mask helpers

def causal_mask(T_q: int, T_k: int, device: torch.device | None = None, offset: int = 0) -> Tensor:
    """(T_q, T_k) bool, True where query i (at absolute position i + offset) may see key j."""
    i = torch.arange(T_q, device=device)[:, None] + offset
    j = torch.arange(T_k, device=device)[None, :]
    return j <= i


def combine_masks(T: int, causal: bool, key_valid: Tensor | None, device: torch.device) -> Tensor | None:
    """Boolean allow-mask broadcastable to (B, H, T, T), or None when nothing is masked."""
    mask = causal_mask(T, T, device) if causal else None
    if key_valid is not None:
        kv = key_valid[:, None, None, :]  # (B, T) -> (B, 1, 1, T)
        mask = kv if mask is None else mask & kv
    return mask


def masked_softmax_av(scores: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """softmax(scores) · v with a boolean allow-mask; rows with nothing allowed give zeros (not NaN)."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    m = scores.amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    p = torch.exp(scores - m)
    denom = p.sum(dim=-1, keepdim=True)
    p = p / torch.where(denom > 0, denom, torch.ones_like(denom))
    return p @ v


def softmax_av(scores: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """softmax(scores)·v for variants: masked entries get the dtype's most negative finite value, in place, so
    only the scores and the probabilities are alive at the peak (``masked_softmax_av`` holds ~3 such buffers).

    A row with no allowed entry is uniform over its entries (finite); the interface leaves such rows unspecified.
    ``scores`` must be a fresh temporary (it is overwritten).
    """
    if mask is not None:
        scores = scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1) @ v


def softmax_map(q: Tensor, k: Tensor, allow: Tensor | None) -> Tensor:
    """softmax(QKᵀ/√D) with a boolean allow-mask, as the exact variants weigh their values: (B, H, T, T).
    A row with no allowed key is uniform, as in ``softmax_av``."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, D) -> (B, H, T, T)
    if allow is not None:
        scores = scores.masked_fill(~allow, torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1)


@torch.no_grad()
def feature_map(phi_q: Tensor, phi_k: Tensor, *, causal: bool, eps: float) -> Tensor:
    """The normalised φ(Q)φ(K)ᵀ, causal-masked where causal: (B, H, T, T), row i = φ(q_i)·φ(k_j) / (φ(q_i)·Σφ(k) +
    eps), what linear attention applies to V (for ``Attention.effective_map``; padded keys' φ are already 0)."""
    kernel = phi_q @ phi_k.transpose(-2, -1)  # (B, H, T, F) @ (B, H, F, T) -> (B, H, T, T)
    if causal:
        kernel = torch.tril(kernel)
    return kernel / (kernel.sum(dim=-1, keepdim=True) + eps)


def reference_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False,
                        key_valid: Tensor | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """Exact softmax attention computed naively in ``dtype`` (float64 by default); returns q's dtype.

    Every test compares against this. Fully masked rows give zeros.
    """
    qd, kd, vd = (x.to(dtype) for x in (q, k, v))
    scores = qd @ kd.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, D) -> (B, H, T, T)
    out = masked_softmax_av(scores, vd, combine_masks(q.shape[-2], causal, key_valid, q.device))
    return out.to(q.dtype)

