"""Every attention mechanism behind one interface, and the small models built on it.

Adding a variant: write ``variants/my_family_or_file.py`` with a ``@register``-ed ``Attention`` subclass, then add
one import line below. Nothing is discovered implicitly.
"""
from .base import (
    FAMILIES,
    Attention,
    AttentionSpec,
    Paper,
    UnknownVariantError,
    create,
    get,
    names,
    reference_attention,
    register,
    specs,
    unregister,
)

# The registered variants: one import line per file.
from . import full  # noqa: E402,F401  full_naive, full_sdpa
from . import linear  # noqa: E402,F401  linear_elu, linear_performer
from . import sparse  # noqa: E402,F401  sparse_window, sparse_bigbird
from . import low_rank  # noqa: E402,F401  low_rank_linformer, low_rank_nystrom

__all__ = [
    "FAMILIES", "Attention", "AttentionSpec", "Paper", "UnknownVariantError",
    "create", "get", "names", "reference_attention", "register", "specs", "unregister",
]
