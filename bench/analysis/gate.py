"""The regression gate's exponents: floor-clamped log-log slopes over the gate's own four-point T grid.

A separate estimator from ``bench.analysis.efficiency`` on purpose: the committed baseline
(results/baseline/gate.json) and the gate's pass/fail decisions were made with it, and on the gate's grids the
smallest peaks lie below what RSS resolves, so they are clamped to a floor rather than fitted with an offset.
"""
from __future__ import annotations

from bench.analysis.fit import loglog_exponent


def clamped_slope(values: dict[str, float], floor: float = 0) -> float:
    """Log-log slope against T of ``{str(T): value}``, each value raised to at least ``floor``."""
    T = [int(t) for t in values]
    return loglog_exponent(T, [max(values[str(t)], floor) for t in T], n_boot=200).value


def exponents(scaling: dict, floor: int) -> dict[str, float]:
    """Time and (floor-clamped) memory exponents of the gate's scaling measurement.

    The time slope is corrected by the linear calibration measured in the same rounds: when the calibration's
    slope exceeds 1 (caches), the excess is subtracted; a slope under 1 (fixed overheads) is never credited, so a
    real T² term still shows as ~2."""
    excess = max(0.0, clamped_slope(scaling["linear_times"]) - 1.0)
    return {"time_exponent": round(clamped_slope(scaling["times"]) - excess, 3),
            "memory_exponent": round(clamped_slope(scaling["peaks"], floor), 3)}
