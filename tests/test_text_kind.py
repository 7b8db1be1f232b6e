"""text_kind: the lexer's labels on hand-checked source, windows labelled by their majority class, class-balanced
nested draws, a split by file (no file in two splits, pretraining text from train files only), and the trivial
rules' accuracies."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.config import ConfigError
from bench.tasks import SPLITS, text_bytes
from bench.tasks import text_kind as tk

SMALL = tk.Config(seq_len=16, max_pool_bytes=200_000)
SOURCE = b'x = 1  # one\ns = """doc\nmore"""\ny = f(s)\n'


def test_bytes_are_labelled_by_the_token_that_covers_them():
    labels = tk.byte_classes(SOURCE)
    assert len(labels) == len(SOURCE)
    by_text = {"x = 1  ": 0, "# one": 2, '"""doc\nmore"""': 1, "y = f(s)": 0}
    for text, cls in by_text.items():
        start = SOURCE.index(text.encode())
        assert set(labels[start:start + len(text)]) == {cls}, text


def test_multibyte_characters_keep_one_label_per_byte():
    source = 's = "héllo"  # ünï\n'.encode()
    labels = tk.byte_classes(source)
    assert len(labels) == len(source)
    assert set(labels[source.index(b'"'):source.index(b"  #")]) == {1}
    assert set(labels[source.index(b"#"):-1]) == {2}


def test_a_file_the_lexer_rejects_is_a_value_error():
    with pytest.raises(ValueError, match="tokenize"):
        tk.byte_classes(b's = """never closed\n')


def test_every_window_carries_the_majority_class_of_its_bytes():
    data, labels = tk.labelled_pool(SMALL, "val")
    windows = tk.window_labels(SMALL, "val")
    assert len(windows) == len(data) - SMALL.seq_len + 1
    for start in np.random.default_rng(0).integers(0, len(windows), 200):
        counts = np.bincount(labels[start:start + SMALL.seq_len], minlength=3)
        assert windows[start] == counts.argmax()


def test_splits_are_by_file_and_pretraining_reads_train_files_only():
    files = {split: set(text_bytes.list_files(SMALL.source(), split)) for split in SPLITS}
    assert all(files[s] for s in SPLITS)
    assert not (files["train"] & files["val"]) and not (files["train"] & files["test"])
    assert not (files["val"] & files["test"])
    assert all(p.suffix == ".py" for s in SPLITS for p in files[s])
    pool = text_bytes.pool(SMALL.source(), "train")  # what bench.pretrain reads
    first = sorted(files["train"], key=lambda p: text_bytes.list_files(SMALL.source(), "train").index(p))[0]
    assert pool.startswith(first.read_bytes()[:1000])


def test_draws_are_balanced_nested_and_labelled_like_the_pool():
    small, large = tk.make(SMALL, 3, 100, "train"), tk.make(SMALL, 3, 700, "train")
    assert torch.equal(small.x, large.x[:100]) and torch.equal(small.y, large.y[:100])
    shares = np.bincount(large.y.numpy(), minlength=3) / 700
    assert np.all(np.abs(shares - 1 / 3) < 0.07)
    data, labels = tk.labelled_pool(SMALL, "train")
    row = large.x[0].numpy().astype(np.uint8).tobytes()
    start = bytes(data).index(row)  # the window's place in the pool
    assert np.bincount(labels[start:start + SMALL.seq_len], minlength=3).argmax() == int(large.y[0])


def test_trivial_rules_sit_between_chance_and_perfect():
    train, test = tk.make(SMALL, 0, 600, "train"), tk.make(SMALL, 0, 300, "test")
    assert 0.4 < tk.centroid_accuracy(train, test) < 0.9
    assert abs(sum(tk.label_shares(SMALL, "test").values()) - 1) < 1e-9


def test_bad_knobs_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="seq_len"):
        dataclasses.replace(SMALL, seq_len=0).validate()
    with pytest.raises(ConfigError, match="max_pool_bytes"):
        dataclasses.replace(SMALL, max_pool_bytes=100).validate()
