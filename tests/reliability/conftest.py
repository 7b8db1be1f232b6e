"""The reliability tests' settings: tests/ on sys.path (fake_sweep), and the hypothesis profiles."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# "ci" (the default) runs 200 examples per property, "nightly" 2000 (HYPOTHESIS_PROFILE=nightly); failing
# examples are not stored (no database), so nothing is written into the repository.
_COMMON = dict(database=None, deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=200, **_COMMON)
settings.register_profile("nightly", max_examples=2000, **_COMMON)
settings.register_profile("dev", max_examples=25, **_COMMON)  # a quick look while changing a variant
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
