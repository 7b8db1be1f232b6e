"""The reliability tests' settings: tests/ on sys.path (fake_sweep), and the hypothesis profiles."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Examples per variant of each fuzz property (test_fuzz.py runs each property once per variant it applies to):
# "ci" (the default) 50, so a property gets 300 (6 causal variants) to 400 (all 8); "nightly" 500
# (HYPOTHESIS_PROFILE=nightly). Failing examples are not stored (no database): nothing is written into the repo.
_COMMON = dict(database=None, deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=50, **_COMMON)
settings.register_profile("nightly", max_examples=500, **_COMMON)
settings.register_profile("dev", max_examples=5, **_COMMON)  # a quick look while changing a variant
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
