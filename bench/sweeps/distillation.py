"""What do distilled small models keep of their teacher, and what do they cost?

DistilBERT's triple for every student of ``variants.distilled``: parameter ratio, measured forward speed-up over
the teacher, and the accuracy (or bits per byte) kept as a share of the teacher's; each student is trained on the
labels alone (``method="labels"``) and with knowledge distillation (``method="kd"``), so the difference is what
the teacher's soft targets add. The teacher trains once per seed and is cached on disk (``teacher_cache``).
Protocol and references: docs/sweeps.md#distillation.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from bench import tasks
from bench.config import Case, ConfigError, TaskPoolConfig, require_nonempty, require_positive
from bench.sweep import Sweep
from bench.analysis.distillation import summary
from bench.measure import time_callable
from bench.sweeps.data_scaling import fixed_splits
from bench.tasks import TaskData
from bench.tasks.text_bytes import bits_per_byte
from bench.train import (BITS_PER_BYTE_TASKS, TrainConfig, batch_order, deterministic, evaluate, fit,
                         make_optimizer, model_config_for)
from variants import model_names
from variants.distilled import kd_loss, student_config, teacher_config
from variants.model import ModelConfig, Transformer, count_parameters

NAME = "distillation"
METHODS = ("labels", "kd")
TRAIN_FIELDS = ("batch_size", "lr", "weight_decay", "warmup", "eval_every", "n_eval", "threads")
TEACHER_FIELDS = ("teacher_d_model", "teacher_layers", "teacher_heads", "teacher_steps", "teacher_n_train")
TASK_FIELDS = {"text_bytes": {"seq_len": "seq_len", "max_pool_bytes": "text_pool_bytes"},
               "local_motif": {"seq_len": "seq_len", "vocab_size": "motif_vocab", "motif_len": "motif_len",
                               "n_classes": "motif_classes"}}  # task field -> the sweep's field


@dataclass(frozen=True)
class Config(TaskPoolConfig):
    """The grid (tasks × students × methods × sizes × seeds) and everything held fixed across it."""

    tasks: tuple[str, ...] = ("text_bytes",)  # text_bytes | local_motif
    students: tuple[str, ...] = ("student_shallow", "student_window")  # students of variants.distilled
    methods: tuple[str, ...] = METHODS  # labels | kd (knowledge distillation)
    sizes: tuple[int, ...] = (256, 2048, 8192)  # student transfer sets: prefixes of the teacher's
    # teacher (full attention, the larger preset)
    teacher_d_model: int = 64  # teacher width
    teacher_layers: int = 2  # teacher layers
    teacher_heads: int = 4  # teacher attention heads
    teacher_steps: int = 600  # teacher training steps
    teacher_n_train: int = 8192  # teacher training examples (students train on prefixes)
    teacher_cache: str = ""  # "" -> <system temp>/attention-limits-teachers
    # students: the same budget of steps for both methods
    steps: int = 300  # student training steps, both methods
    alpha: float = 0.5  # KD weight of the soft-target term (1 - alpha on the labels)
    temperature: float = 2.0  # KD softmax temperature
    # speed: forward of teacher and student on the same batch of test rows
    speed_batch: int = 32  # test rows per timed forward
    speed_min_run_s: float = 0.2  # seconds of timed forwards per model

    def validate(self) -> None:
        """Raise a one-line ConfigError on the first problem."""
        super().validate()
        students = model_names("student")
        bad = [s for s in self.students if s not in students] + [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"unknown student or method {bad[0]!r}; students: {', '.join(students)}; "
                              f"methods: {', '.join(METHODS)}")
        for name in self.tasks:
            tasks.get(name)
            if name not in TASK_FIELDS:
                raise ConfigError(f"--tasks: distillation supports {', '.join(TASK_FIELDS)}, got {name!r}")
        require_nonempty(self, ("tasks", "students", "methods", "sizes", "seeds"))
        if max(self.sizes) > self.teacher_n_train or min(self.sizes) < self.batch_size:
            raise ConfigError(f"--sizes must lie in [batch_size={self.batch_size}, teacher_n_train="
                              f"{self.teacher_n_train}], got {self.sizes}")
        self._validate_numbers()
        for name in self.tasks:
            task_config(self, name).validate()

    def _validate_numbers(self) -> None:
        train_config(self, seed=0, n_train=self.teacher_n_train, steps=self.teacher_steps).validate()
        require_positive(self, ("teacher_d_model", "teacher_layers", "teacher_heads", "steps", "speed_batch"))
        if self.teacher_d_model % (2 * self.teacher_heads):
            raise ConfigError(f"--teacher-d-model={self.teacher_d_model} must be divisible by 2·teacher_heads so "
                              f"every half-width student keeps whole heads")
        if not (0.0 <= self.alpha <= 1.0 and self.temperature > 0 and self.speed_min_run_s > 0):
            raise ConfigError("--alpha must be in [0, 1]; --temperature and --speed-min-run-s must be > 0")


PROFILES = {
    # two seeds: 24 cases + 2 teachers (the measurement: docs/sweeps.md#distillation)
    "quick": Config(seeds=(0, 1)),
    "full": Config(students=tuple(model_names("student")), sizes=(256, 1024, 4096, 16384, 65536), seeds=(0, 1, 2, 3, 4),
                   teacher_n_train=65536, teacher_steps=6000, steps=3000, seq_len=128, n_eval=2048,
                   teacher_d_model=128, time_cap_s=3600.0),
}


# ------------------------------------------------------------------------------------------------ configuration

def _field(cfg: Config | Case, name: str) -> Any:
    return cfg[name] if isinstance(cfg, Case) else getattr(cfg, name)


def task_config(cfg: Config | Case, task: str) -> Any:
    """The task's frozen Config, from the sweep Config or a Case (which carries the same knobs)."""
    return tasks.get(task).Config(**{f: _field(cfg, mine) for f, mine in TASK_FIELDS[task].items()})


def train_config(cfg: Config | Case, seed: int, n_train: int, steps: int) -> TrainConfig:
    """The TrainConfig of a teacher or student fit (no early stop short of a perfect val score)."""
    return TrainConfig(seed=seed, n_train=n_train, steps=steps, target_accuracy=1.0, final_lr_frac=1.0,
                       **{name: _field(cfg, name) for name in TRAIN_FIELDS})


def teacher_model_config(case: Case, task_cfg: Any) -> ModelConfig:
    """The teacher preset on the task (full attention)."""
    base = model_config_for(task_cfg, "full_sdpa", token_shift=case["token_shift"])
    return teacher_config(base, d_model=case["teacher_d_model"], n_layers=case["teacher_layers"],
                          n_heads=case["teacher_heads"])


# ---------------------------------------------------------------------------------------------------- the grid

def cases(cfg: Config) -> Iterator[Case]:
    """One Case per (task, seed, n_train, student, method); seeds outermost so each teacher is trained once and
    reused from the cache by the cases after it."""
    shared = {name: getattr(cfg, name) for name in (*TRAIN_FIELDS, *TEACHER_FIELDS, "steps", "alpha",
                                                    "temperature", "token_shift", "speed_batch", "speed_min_run_s",
                                                    "teacher_cache", "data_seed")}
    for task in cfg.tasks:
        knobs = {mine: getattr(cfg, mine) for mine in TASK_FIELDS[task].values()}
        for seed in dict.fromkeys(cfg.seeds):
            for n in sorted(set(cfg.sizes)):
                for student in cfg.students:
                    for method in cfg.methods:
                        yield Case.make(NAME, task=task, seed=seed, n_train=n, student=student, method=method,
                                        **shared, **knobs)


# ------------------------------------------------------------------------------------------------ the teacher

def teacher_key(case: Case) -> str:
    """A hash of everything that defines a teacher: task knobs, teacher preset and training, data and seed."""
    keys = (*TEACHER_FIELDS, *TRAIN_FIELDS, "task", "seed", "data_seed", "token_shift",
            *TASK_FIELDS[case["task"]].values())
    blob = json.dumps({k: case[k] for k in sorted(keys)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def cache_dir(case: Case) -> Path:
    return Path(case["teacher_cache"] or Path(tempfile.gettempdir()) / "attention-limits-teachers")


def _train_teacher(case: Case, cfg: ModelConfig, splits: tuple[TaskData, TaskData, TaskData]) -> dict[str, Any]:
    """Fit the teacher on the full pool; its state dict and test scores."""
    tc = train_config(case, case["seed"], case["teacher_n_train"], case["teacher_steps"])
    with deterministic(tc.threads):
        torch.manual_seed(tc.seed)
        net = Transformer(cfg)
        start = time.perf_counter()
        fit(net, splits[0], splits[1], tc)
        train_s = time.perf_counter() - start
        accuracy, loss = evaluate(net, splits[2], tc.eval_batch_size)
    return {"state": net.state_dict(), "accuracy": accuracy, "loss": loss, "train_s": train_s}


def load_teacher(case: Case, cfg: ModelConfig,
                 splits: tuple[TaskData, TaskData, TaskData]) -> tuple[nn.Module, dict[str, Any], bool]:
    """(teacher in eval mode, its scores, whether it came from the cache); trains and caches it on a miss."""
    path = cache_dir(case) / f"teacher-{teacher_key(case)}.pt"
    hit = path.exists()
    if hit:
        record = torch.load(path, weights_only=True)
    else:
        record = _train_teacher(case, cfg, splits)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(record, tmp)
        os.replace(tmp, path)  # atomic: a killed case never leaves a half-written teacher
    net = Transformer(cfg)
    net.load_state_dict(record["state"])
    net.eval()
    return net, record, hit


# ------------------------------------------------------------------------------------------------ the students

def fit_student(student: nn.Module, teacher: nn.Module | None, splits: tuple[TaskData, TaskData, TaskData],
                tc: TrainConfig, alpha: float, temperature: float) -> list[list[float]]:
    """``bench.train.fit`` with the KD loss: AdamW on ``tc.steps`` steps of ``kd_loss`` (α = 0 or no teacher:
    cross-entropy on the labels). Returns the val curve [[step, acc, loss], ...]."""
    train_data, val, _ = splits
    opt, schedule = make_optimizer(student, tc)
    order = batch_order(len(train_data), tc.batch_size, torch.Generator().manual_seed(tc.seed))
    curve: list[list[float]] = []
    student.train()
    for step in range(tc.steps + 1):
        if step % tc.eval_every == 0 or step == tc.steps:
            curve.append([step, *(round(v, 4) for v in evaluate(student, val, tc.eval_batch_size))])
        if step == tc.steps:
            break
        idx = next(order)
        x, y, valid = train_data.x[idx], train_data.y[idx], train_data.valid[idx]
        logits = student(x, valid)
        with torch.no_grad():
            soft = teacher(x, valid) if teacher is not None and alpha > 0 else logits
        loss = kd_loss(logits, soft, y, alpha=alpha if teacher is not None else 0.0, temperature=temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            nn.utils.clip_grad_norm_(student.parameters(), tc.grad_clip)
        opt.step()
        schedule.step()
    return curve


def forward_seconds(model: nn.Module, data: TaskData, batch: int, threads: int, min_run_s: float) -> float:
    """Median seconds of one inference forward on the first ``batch`` rows of ``data``."""
    x, valid = data.x[:batch], data.valid[:batch]

    def forward() -> Any:
        with torch.inference_mode():
            return model(x, valid)
    return float(time_callable(forward, threads, min_run_time=min_run_s)["median_s"])


def _student(case: Case, s_cfg: ModelConfig, teacher: nn.Module,
             splits: tuple[TaskData, TaskData, TaskData]) -> tuple[nn.Module, dict[str, Any]]:
    """Train one student by ``case["method"]`` and score it on the test split."""
    tc = train_config(case, case["seed"], case["n_train"], case["steps"])
    alpha = case["alpha"] if case["method"] == "kd" else 0.0
    with deterministic(tc.threads):
        torch.manual_seed(tc.seed)
        net = Transformer(s_cfg)
        start = time.perf_counter()
        curve = fit_student(net, teacher if alpha > 0 else None, splits, tc, alpha, case["temperature"])
        train_s = time.perf_counter() - start
        accuracy, loss = evaluate(net, splits[2], tc.eval_batch_size)
    net.eval()
    return net, {"accuracy": accuracy, "loss": loss, "curve": curve, "train_s": train_s, "steps_run": tc.steps}


def execute(case: Case) -> dict[str, Any]:
    """Teacher (cached per seed), one student by one method, then the triple against the teacher."""
    task = case["task"]
    task_cfg = task_config(case, task)
    t_cfg = teacher_model_config(case, task_cfg)
    s_cfg = student_config(t_cfg, case["student"])
    full = fixed_splits(task, task_cfg, case["data_seed"], case["teacher_n_train"], case["n_eval"])
    teacher, t_rec, hit = load_teacher(case, t_cfg, full)
    subset = TaskData(*(t[:case["n_train"]] for t in (full[0].x, full[0].y, full[0].valid)))  # nested prefix
    student, out = _student(case, s_cfg, teacher, (subset, full[1], full[2]))
    with deterministic(case["threads"]):
        timing = [forward_seconds(m, full[2], case["speed_batch"], case["threads"], case["speed_min_run_s"])
                  for m in (teacher, student)]
    in_bits = task in BITS_PER_BYTE_TASKS
    bpb, t_bpb = (bits_per_byte(out["loss"]), bits_per_byte(t_rec["loss"])) if in_bits else (None, None)
    n_s, n_t = count_parameters(student), count_parameters(teacher)
    return {**out, "bits_per_byte": bpb, "teacher_accuracy": t_rec["accuracy"], "teacher_loss": t_rec["loss"],
            "teacher_bits_per_byte": t_bpb, "teacher_train_s": t_rec["train_s"], "teacher_cached": hit,
            "accuracy_share": out["accuracy"] / t_rec["accuracy"] if t_rec["accuracy"] > 0 else math.nan,
            "bpb_ratio": bpb / t_bpb if in_bits else None,
            "n_params": n_s, "teacher_params": n_t, "param_ratio": n_s / n_t, "teacher_s": timing[0],
            "student_s": timing[1], "speedup": timing[0] / timing[1],
            "student_attention": s_cfg.attention, "student_d_model": s_cfg.d_model, "student_layers": s_cfg.n_layers}


SWEEP = Sweep(name=NAME, config=Config, profiles=PROFILES, cases=cases, execute=execute, summarize=summary,
              metrics=("accuracy", "loss", "curve", "train_s", "steps_run", "bits_per_byte", "teacher_accuracy",
                       "teacher_loss", "teacher_bits_per_byte", "teacher_train_s", "teacher_cached",
                       "accuracy_share", "bpb_ratio", "n_params", "teacher_params", "param_ratio", "teacher_s",
                       "student_s", "speedup", "student_attention", "student_d_model", "student_layers"))
