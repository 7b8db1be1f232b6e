"""Every attention mechanism behind one interface, and the small models built on it.

Two registries, one interface: attention variants (``names``, ``get``, ``specs``, ``create``; ``AttentionSpec``)
and model-level variants, the attention-free baselines and the distilled students (``model_names``,
``get_model``, ``model_specs``, ``create_model``; ``ModelSpec``).

Adding a variant: write ``variants/my_family_or_file.py`` with a ``@register``-ed ``Attention`` subclass (or a
``register_model(ModelSpec(...))``), then add one import line below. Nothing is discovered implicitly.
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
from .model import (
    MODEL_KINDS,
    ModelSpec,
    create_model,
    get_model,
    model_names,
    model_specs,
    register_model,
    unregister_model,
)

# The registered variants: one import line per file.
from . import full  # noqa: E402,F401  full_naive, full_sdpa
from . import linear  # noqa: E402,F401  linear_elu, linear_performer
from . import sparse  # noqa: E402,F401  sparse_window, sparse_bigbird
from . import low_rank  # noqa: E402,F401  low_rank_linformer, low_rank_nystrom
from . import baselines  # noqa: E402,F401  cnn_baseline, gru_baseline
from . import distilled  # noqa: E402,F401  student_narrow, student_shallow, student_window, student_linear

__all__ = [
    "FAMILIES", "Attention", "AttentionSpec", "Paper", "UnknownVariantError",
    "create", "get", "names", "reference_attention", "register", "specs", "unregister",
    "MODEL_KINDS", "ModelSpec", "create_model", "get_model", "model_names", "model_specs", "register_model",
    "unregister_model",
]
