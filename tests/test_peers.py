"""bench.peers and the peers sweep: each installed peer computes what our variant computes (where claimed), the
sweep's case grid, the summary's ratios, and a missing peer package giving NotImplementedError with the hint.
CPU only, small inputs; no timing assertions."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import variants
from bench import peers
from bench.measure import Shape
from bench.analysis import peers as analysis
from bench.sweeps import peers as sweep

ROOT = Path(__file__).resolve().parents[1]
SMALL = Shape(B=2, H=2, T=256, D=64)  # T a multiple of the default window (64) and landmarks (64)


def peer_or_skip(name: str) -> peers.PeerSpec:
    spec = peers.get(name)
    pytest.importorskip(spec.module, reason=f"{spec.package} not installed")
    return spec


def test_registry_is_consistent():
    for name, spec in peers.PEERS.items():
        assert spec.name == name
        assert spec.ours in variants.names(), f"{name}: {spec.ours} is not a registered variant"
        assert re.fullmatch(r"[A-Za-z0-9._-]+==\d+(\.\d+)*", spec.requirement), spec.requirement
        assert spec.notes.strip()
    assert peers.requirements() == sorted({s.requirement for s in peers.PEERS.values()})
    assert set(peers.available()) <= set(peers.PEERS)


def test_peers_extra_matches_registry():
    """Once pyproject.toml declares the ``peers`` extra, it pins exactly the registry's versions."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("optional-dependencies", {})
    if "peers" not in extras:
        pytest.skip("pyproject.toml has no peers extra yet")
    pinned = sorted(r for r in extras["peers"] if "==" in r)
    assert pinned == peers.requirements()


@pytest.mark.parametrize("name", [n for n in peers.names() if n != "nystrom"])
def test_peer_matches_ours(name):
    spec = peer_or_skip(name)
    # FAVOR+ at unit-normal D=64 is eps-dominated in the peer; compare where both estimate softmax well
    scale = 0.25 if name == "performer" else 1.0
    result = peers.agreement(spec, SMALL, grads=True, qk_scale=scale)
    assert result["rel_err"] < spec.tolerance, result
    assert result["grad_rel_err"] < 10 * spec.tolerance, result


def test_performer_peer_is_ours_plus_its_feature_eps(monkeypatch):
    """At unit-normal inputs the performer peer differs from ours (rel_err ~1) only by the eps it adds to every
    feature: with eps = 0 it computes ours, and with eps its output sits near mean(v) (what the report says)."""
    spec = peer_or_skip("performer")
    shape = Shape(B=1, H=2, T=1024, D=64)  # the peers sweep's smallest T
    result = peers.agreement(spec, shape)
    assert result["rel_err"] > 0.5 and result["peer_vs_mean_v"] < 0.15 < result["mean_v_vs_full"], result
    import performer_pytorch.performer_pytorch as pp

    kernel = pp.softmax_kernel
    monkeypatch.setattr(pp, "softmax_kernel", lambda *a, **kw: kernel(*a, **{**kw, "eps": 0.0}))
    assert peers.agreement(spec, shape)["rel_err"] < 1e-5


def test_collapse_note_names_a_peer_at_mean_v():
    table = pd.DataFrame({"peer": ["performer", "performer", "local_window"], "phase": "forward", "T": [1, 2, 1],
                          "rel_err": [0.98, 0.99, 1e-7], "peer_vs_mean_v": [0.06, 0.04, 0.9],
                          "mean_v_vs_full": [0.8, 0.8, 0.8], "ours_vs_full": [4.1, 5.0, 0.1],
                          "peer_vs_full": [0.8, 0.8, 0.1]})
    collapsed = analysis.collapsed_to_mean(table)
    assert collapsed["peer"].tolist() == ["performer"]
    assert collapsed["rel_err"].iloc[0] == pytest.approx(0.985) and collapsed["ours_vs_full"].iloc[0] == 4.55
    assert analysis.collapsed_to_mean(table.drop(columns="peer_vs_mean_v")).empty


def test_nystrom_matches_ours_for_one_matrix():
    """With B·H = 1 the peer's whole-batch pseudo-inverse start equals our per-matrix one: the same computation."""
    spec = peer_or_skip("nystrom")
    result = peers.agreement(spec, Shape(B=1, H=1, T=256, D=64), grads=True)
    assert result["rel_err"] < spec.tolerance, result
    assert result["grad_rel_err"] < 10 * spec.tolerance, result
    # several matrices: only the pseudo-inverse's starting scale differs, a small difference after 6 iterations
    assert peers.agreement(spec, SMALL)["rel_err"] < 2e-2


def test_peer_output_contract():
    for name in peers.available():
        spec = peers.get(name)
        q, k, v = (torch.randn(SMALL.B, SMALL.H, SMALL.T, SMALL.D) for _ in range(3))
        out = peers.build_peer(spec, SMALL)(q, k, v)
        assert out.shape == q.shape and out.dtype == q.dtype and torch.isfinite(out).all()


def test_peer_rejects_a_length_it_would_pad():
    for name in ("local_window", "nystrom"):
        spec = peer_or_skip(name)
        with pytest.raises(NotImplementedError, match="multiple"):
            peers.build_peer(spec, Shape(B=1, H=2, T=200, D=64))


@pytest.mark.parametrize("name", peers.names())
def test_missing_package_is_unsupported_with_hint(name, monkeypatch):
    spec = peers.get(name)
    monkeypatch.setitem(sys.modules, spec.module, None)  # `import spec.module` now raises ImportError
    assert name not in peers.available()
    with pytest.raises(NotImplementedError, match=re.escape(peers.INSTALL_HINT)) as info:
        peers.build_peer(spec, SMALL)
    assert spec.package in str(info.value)
    case = next(c for c in sweep.cases(sweep.Config(peers=(name,), seq_lens=(256,))) if c["impl"] == "ours")
    with pytest.raises(NotImplementedError, match="not installed"):
        sweep.execute(case)


def test_cases_grid():
    cfg = sweep.Config(peers=("local_window", "nystrom"), seq_lens=(2048, 1024))
    cs = list(sweep.cases(cfg))
    assert len(cs) == 2 * 2 * 2 * 2
    assert len({c.id for c in cs}) == len(cs)
    assert [c["T"] for c in cs] == sorted(c["T"] for c in cs)
    assert {(c["peer"], c["variant"]) for c in cs} == {("local_window", "sparse_window"), ("nystrom", "low_rank_nystrom")}
    assert [c["impl"] for c in cs[:4]] == ["ours", "peer", "ours", "peer"]
    first = cs[0].as_dict()
    assert {k: first[k] for k in ("B", "H", "D", "dtype", "device", "threads", "phase")} == {
        "B": 1, "H": 4, "D": 64, "dtype": "float32", "device": "cpu", "threads": 2, "phase": "forward"}
    default = list(sweep.cases(sweep.PROFILES["quick"]))
    assert len(default) == len(peers.PEERS) * 3 * 2 * 2
    assert min(c["T"] for c in default) >= 1024


def test_config_validation():
    from bench.config import ConfigError, apply_overrides

    cfg = apply_overrides(sweep.Config(), {"peers": "performer,nystrom", "seq-lens": "1024"})
    assert cfg.peers == ("performer", "nystrom") and cfg.seq_lens == (1024,)
    for bad in ({"peers": "nope"}, {"phases": "train_step"}, {"seq-lens": "0"}, {"paired-rounds": "2"},
                {"paired-block-s": "0"}):
        with pytest.raises(ConfigError):
            apply_overrides(sweep.Config(), bad)


def test_execute_and_summarize():
    """One tiny pair through execute (in-process) and the ratio table."""
    import pandas as pd

    name = "linformer_pytorch"
    peer_or_skip(name)
    cfg = sweep.Config(peers=(name,), seq_lens=(256,), phases=("forward",), min_run_time=0.01, paired_rounds=3,
                       paired_block_s=0.005)
    rows = []
    for case in sweep.cases(cfg):
        metrics = sweep.execute(case)
        assert metrics["median_s"] > 0 and metrics["peak_bytes"] >= 0
        rows.append({**case.as_dict(), "status": "ok", **metrics})
    peer_row = rows[1]
    assert peer_row["rel_err"] < 1e-5 and peer_row["rel_err_small_logits"] < 1e-5
    table = analysis.summary(pd.DataFrame(rows))
    assert len(table) == 1
    row = table.iloc[0]
    assert len(peer_row["paired_ratios"]) == 3 and "paired_ratios" not in rows[0]
    assert peer_row["paired_time_ratio_q1"] <= peer_row["paired_time_ratio"] <= peer_row["paired_time_ratio_q3"]
    assert row["time_ratio"] == pytest.approx(peer_row["paired_time_ratio"])
    assert (row["time_ratio_q1"], row["time_ratio_q3"]) == pytest.approx(
        (peer_row["paired_time_ratio_q1"], peer_row["paired_time_ratio_q3"]))
    assert row["time_ratio_separate"] == pytest.approx(rows[0]["median_s"] / rows[1]["median_s"])
    assert row["rel_err"] == pytest.approx(peer_row["rel_err"])
    rows[1]["status"] = "unsupported"
    assert pd.isna(analysis.summary(pd.DataFrame(rows)).iloc[0]["time_ratio"])


def test_summarize_reports_the_side_by_side_ratio_and_keeps_the_separate_one():
    import pandas as pd

    base = {"peer": "p", "variant": "v", "T": 1024, "phase": "forward", "status": "ok", "peak_bytes": 10}
    rows = [{**base, "impl": "ours", "median_s": 1.1e-3},
            {**base, "impl": "peer", "median_s": 1.0e-3, "paired_time_ratio": 0.9, "paired_time_ratio_q1": 0.88,
             "paired_time_ratio_q3": 0.93}]
    row = analysis.summary(pd.DataFrame(rows)).iloc[0]
    assert row["time_ratio"] == pytest.approx(0.9) and row["time_ratio_separate"] == pytest.approx(1.1)
    assert (row["time_ratio_q1"], row["time_ratio_q3"]) == pytest.approx((0.88, 0.93))
    old = [{k: v for k, v in r.items() if not k.startswith("paired")} for r in rows]  # a run from before pairing
    assert analysis.summary(pd.DataFrame(old)).iloc[0]["time_ratio"] == pytest.approx(1.1)
