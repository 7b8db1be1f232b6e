"""distillation: the Hinton et al. loss by hand, students smaller than the teacher, the teacher cached per seed,
nested transfer sets, and a summary that pairs KD with labels by seed."""
from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from bench.config import ConfigError
from bench.run import sweep_cases
from bench.analysis import distillation as analysis
from bench.sweeps import distillation as dist
from bench.train import model_config_for
import variants
from variants.distilled import IGNORE_INDEX, kd_loss, student_config, teacher_config
from variants.model import Transformer, count_parameters


def _softmax(z, tau):
    e = [math.exp(v / tau) for v in z]
    return [v / sum(e) for v in e]


def test_kd_loss_equals_a_hand_computation_on_scored_positions_only():
    s = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0], [9.0, -9.0, 3.0]]])  # (B=1, T=3, V=3)
    t = torch.tensor([[[0.0, 2.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])
    y = torch.tensor([[1, 2, IGNORE_INDEX]])  # the last position is not scored
    alpha, tau = 0.3, 2.0
    kl = ce = 0.0
    for pos in range(2):
        p_t, p_s = _softmax(t[0, pos].tolist(), tau), _softmax(s[0, pos].tolist(), tau)
        kl += sum(a * (math.log(a) - math.log(b)) for a, b in zip(p_t, p_s)) / 2
        ce += -math.log(_softmax(s[0, pos].tolist(), 1.0)[int(y[0, pos])]) / 2
    expected = alpha * tau ** 2 * kl + (1 - alpha) * ce
    assert kd_loss(s, t, y, alpha=alpha, temperature=tau).item() == pytest.approx(expected, rel=1e-5)


def test_kd_loss_at_alpha_zero_is_cross_entropy_for_both_heads():
    torch.manual_seed(0)
    s, t = torch.randn(4, 5, 7), torch.randn(4, 5, 7)
    y = torch.randint(0, 7, (4, 5))
    y[0, :3] = IGNORE_INDEX
    ce = F.cross_entropy(s.reshape(-1, 7), y.reshape(-1), ignore_index=IGNORE_INDEX)
    assert kd_loss(s, t, y, alpha=0.0).item() == pytest.approx(ce.item(), rel=1e-6)
    sc, tc, yc = torch.randn(6, 3), torch.randn(6, 3), torch.randint(0, 3, (6,))
    assert kd_loss(sc, tc, yc, alpha=0.0).item() == pytest.approx(F.cross_entropy(sc, yc).item(), rel=1e-6)
    assert kd_loss(sc, sc, yc, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)  # KL of a model with itself


def test_kd_loss_gradient_does_not_reach_the_teacher():
    s, t = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    kd_loss(s, t, torch.tensor([0, 1, 2])).backward()
    assert s.grad is not None and t.grad is None


def test_every_student_preset_is_smaller_than_the_teacher():
    cfg = dist.PROFILES["full"]
    base = model_config_for(dist.task_config(cfg, "text_bytes"), "full_sdpa")
    teacher = teacher_config(base, d_model=cfg.teacher_d_model, n_layers=cfg.teacher_layers,
                             n_heads=cfg.teacher_heads)
    n_teacher = count_parameters(Transformer(teacher))
    for name in variants.model_names("student"):
        student = student_config(teacher, name)
        assert student.d_model < teacher.d_model and student.n_layers <= teacher.n_layers
        assert student.n_heads <= teacher.n_heads
        assert count_parameters(Transformer(student)) < 0.6 * n_teacher, name
        torch.manual_seed(0)
        built = variants.create_model(name, teacher)  # the registry builds the same student, same init
        torch.manual_seed(0)
        twin = Transformer(student)
        assert built.state_dict().keys() == twin.state_dict().keys()
        assert all(torch.equal(a, b) for a, b in zip(built.state_dict().values(), twin.state_dict().values()))


def test_transfer_sets_are_prefixes_of_the_teachers_pool():
    cfg = dist.PROFILES["quick"]
    from bench.sweeps.data_scaling import fixed_splits
    task_cfg = dist.task_config(cfg, "text_bytes")
    full = fixed_splits("text_bytes", task_cfg, cfg.data_seed, 512, 32)
    part = fixed_splits("text_bytes", task_cfg, cfg.data_seed, 64, 32)
    assert torch.equal(part[0].x, full[0].x[:64]) and torch.equal(part[2].x, full[2].x)


def test_cases_are_unique_and_seeds_come_first():
    cases = sweep_cases(dist.SWEEP, dist.PROFILES["quick"])
    seeds = [c["seed"] for c in cases]
    assert seeds == sorted(seeds)


def test_bad_knobs_are_one_line_config_errors():
    quick = dist.PROFILES["quick"]
    for change, message in ((dict(students=("student_huge",)), "unknown student"),
                            (dict(sizes=(256, 100000)), "must lie in"), (dict(alpha=1.5), "alpha"),
                            (dict(tasks=("mqar",)), "supports")):
        with pytest.raises(ConfigError, match=message) as info:
            dataclasses.replace(quick, **change).validate()
        assert "\n" not in str(info.value)
    for cfg in dist.PROFILES.values():
        cfg.validate()


def test_tiny_run_trains_the_teacher_once_and_reports_the_triple(tmp_path):
    cfg = dataclasses.replace(dist.PROFILES["quick"], students=("student_shallow",), sizes=(32, 64), seeds=(0,),
                              teacher_n_train=64, teacher_steps=4, steps=4, eval_every=2, n_eval=32, seq_len=16,
                              speed_min_run_s=0.01, teacher_cache=str(tmp_path))
    cfg.validate()
    rows = [{**c.as_dict(), "status": "ok", **dist.execute(c)} for c in dist.cases(cfg)]
    assert [r["teacher_cached"] for r in rows] == [False, True, True, True]
    assert len({r["teacher_accuracy"] for r in rows}) == 1 and len(list(tmp_path.iterdir())) == 1
    for r in rows:
        assert 0 < r["param_ratio"] < 1 and r["speedup"] > 0 and r["bpb_ratio"] > 0
        assert r["accuracy_share"] == pytest.approx(r["accuracy"] / r["teacher_accuracy"])
    table = analysis.summary(pd.DataFrame(rows))
    assert list(table["n_train"]) == [32, 64] and {"kd_gain_bpb", "labels_bpb", "kd_bpb"} <= set(table)


def test_summary_pairs_kd_with_labels_by_seed():
    rows = [{"task": "text_bytes", "student": "s", "n_train": 64, "seed": seed, "method": m, "status": "ok",
             "accuracy": 0.5 + (0.1 if m == "kd" else 0.0) + 0.01 * seed,
             "bits_per_byte": 3.0 - (0.2 if m == "kd" else 0),
             "teacher_bits_per_byte": 2.5, "teacher_accuracy": 0.6, "accuracy_share": 0.9, "param_ratio": 0.3,
             "speedup": 2.0} for seed in range(3) for m in ("kd", "labels")]
    row = analysis.summary(pd.DataFrame(rows)).iloc[0]
    assert row["kd_gain_acc"] == pytest.approx(0.1) and row["kd_gain_acc_std"] == pytest.approx(0.0, abs=1e-9)
    assert row["kd_gain_bpb"] == pytest.approx(0.2) and row["speedup"] == 2.0
