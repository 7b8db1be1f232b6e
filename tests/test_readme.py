"""The README's promises: its example variant works as written, and its two commands are what CI runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import variants

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def block(marker: str) -> str:
    body = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```\n<!-- /{marker} -->", README, re.S)
    assert body, f"README has no {marker} block"
    return body.group(1)


@pytest.fixture
def example_variant():
    namespace: dict = {}
    exec(compile(block("example-variant"), "README.md", "exec"), namespace)
    yield variants.get("full_chunked")
    variants.unregister("full_chunked")


def test_readme_example_variant_registers_and_is_exact(example_variant):
    assert "full_chunked" in variants.names("full")
    attn = variants.create("full_chunked", d_head=8, n_heads=2, max_seq_len=300, chunk=64)
    q, k, v = (torch.randn(2, 2, 300, 8, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(attn(q, k, v), variants.reference_attention(q, k, v))
    with FlopCounterMode(display=False) as counter:
        attn(q, k, v)
    assert counter.get_total_flops() == attn.flops(2, 300)
    with pytest.raises(NotImplementedError):
        variants.create("full_chunked", d_head=8, n_heads=2, max_seq_len=300, causal=True)


def test_two_commands_install_the_cpu_torch_pin():
    for marker in ("main-command", "test-command"):
        assert "pip install torch==2.13.0" in block(marker)
    assert "pytest" in block("test-command")
    assert "attention-limits" in block("main-command")


def test_ci_installs_the_peers_and_ray_extras_so_their_tests_run():
    extras = re.search(r'pip install -e "\.\[([a-z,]+)\]"', block("test-command")).group(1).split(",")
    assert {"test", "peers", "ray"} <= set(extras)


def test_every_relative_link_resolves():
    root = Path(__file__).resolve().parents[1]
    links = re.findall(r"\]\(([^)#:]+)\)", README)
    assert any(link.startswith("reports/reference/") for link in links)
    missing = [link for link in links if not (root / link).exists()]
    assert not missing, missing
