"""Time, FLOPs, peak bytes, accuracy and approximation error per variant × T, in the numpy/pandas asv idiom.

``time_*`` classes do their work in ``setup`` (``bench.measure.phase_callable``) and time one call. ``peakmem_`` is
useless here (``import torch`` alone is ~220 MiB of the measured process), so ``track_peak_bytes`` measures the
forward in a ``bench.isolate.Worker`` child with ``bench.measure.probes``, like the sweeps and the gate.
"""
from __future__ import annotations

import torch

import variants
from bench.measure import build_attention, counted_flops, make_qkv, phase_callable

from . import common


class _PerVariantAndLength:
    params = common.PARAMS
    param_names = common.PARAM_NAMES
    phase = "forward"

    def setup(self, name, T):
        common.prepare(name)
        self.fn = common.synced(phase_callable(name, common.shape(T), self.phase))
        self.fn()  # warm-up: lazy init and first-touch page faults stay out of the timing


class TimeForward(_PerVariantAndLength):
    version = 1
    phase = "forward"

    def time_forward(self, name, T):
        self.fn()


class TimeForwardBackward(_PerVariantAndLength):
    version = 1
    phase = "forward_backward"

    def time_forward_backward(self, name, T):
        self.fn()


class TimeTrainStep(_PerVariantAndLength):
    params = common.TRAIN_PARAMS
    version = 1
    phase = "train_step"

    def time_train_step(self, name, T):
        self.fn()


class TrackFlops:
    """Matmul FLOPs of one forward counted by FlopCounterMode on the math path."""

    params = common.PARAMS
    param_names = common.PARAM_NAMES
    version = 1

    def setup_cache(self):
        return {(n, T): counted_flops(n, common.shape(T)) for n in common.VARIANTS for T in common.SEQ_LENS}

    def setup(self, flops, name, T):
        common.prepare(name)

    def track_flops(self, flops, name, T):
        return flops[(name, T)]

    track_flops.unit = "flops"


class TrackPeakBytes:
    """Peak bytes one forward adds, measured in one worker child for every (variant, T) in ``setup_cache``."""

    params = common.PARAMS
    param_names = common.PARAM_NAMES
    version = 1
    timeout = 600

    def setup_cache(self):
        return common.peak_bytes_of([(n, T) for n in common.VARIANTS for T in common.SEQ_LENS])

    def setup(self, peaks, name, T):
        common.prepare(name)
        if peaks.get((name, T)) is None:
            raise NotImplementedError(f"{name} at T={T}: no peak measured")

    def track_peak_bytes(self, peaks, name, T):
        return peaks[(name, T)]

    track_peak_bytes.unit = "bytes"


class _PerVariant:
    params = [common.PARAMS[0]]
    param_names = [common.PARAM_NAMES[0]]
    version = 1


class TrackAccuracy(_PerVariant):
    """Test accuracy after the regression gate's seeded tiny training run (MQAR), per variant."""

    timeout = 300

    def setup(self, name):
        from bench.gate import GateConfig, model_metrics

        common.prepare(name)
        self.accuracy = model_metrics(name, GateConfig())["accuracy"]

    def track_accuracy(self, name):
        return self.accuracy

    track_accuracy.unit = "accuracy"


class TrackApproxError(_PerVariant):
    """‖out − reference‖ / ‖reference‖ against float64 ``variants.reference_attention`` at T=512 and the
    variant's default budget (window, rank, landmarks, features); exact variants are skipped."""

    T = 512

    def setup(self, name):
        common.prepare(name)
        if variants.get(name).spec.exact:
            raise NotImplementedError(f"{name} is exact")
        shape = common.shape(self.T)
        q, k, v = make_qkv(shape)
        with torch.inference_mode():
            out = build_attention(name, shape)(q, k, v).double()
            ref = variants.reference_attention(q, k, v).double()
        self.error = float((out - ref).norm() / ref.norm())

    def track_approx_error(self, name):
        return self.error

    track_approx_error.unit = "relative error"
