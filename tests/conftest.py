"""Shared test setup: trained-model checkpoints go to a per-session temporary folder, never the user's cache."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def checkpoint_cache(tmp_path_factory):
    """Every sweep run by the tests (and its worker children, which inherit the environment) caches models in a
    fresh folder that pytest removes."""
    saved = os.environ.get("ATTENTION_LIMITS_CACHE")
    os.environ["ATTENTION_LIMITS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    os.environ.pop("ATTENTION_LIMITS_CACHE") if saved is None else os.environ.update(ATTENTION_LIMITS_CACHE=saved)
