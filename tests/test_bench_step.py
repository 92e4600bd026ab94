"""bench/step.py: the tiny mode's report has every part, the FLOP count is exact, --compare runs
both trees.
"""

import importlib.util
import os

import pytest
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("bench_step", os.path.join(ROOT, "bench", "step.py"))
bench_step = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_step)


@pytest.fixture(autouse=True)
def keep_thread_count():
    """The bench sets torch's thread count (--threads): give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_tiny_report_has_stages_operators_flops_and_the_machine_rate(tmp_path, capsys):
    bench_step.main(["--tiny", "--cache-dir", str(tmp_path), "--threads", "1"])
    out = capsys.readouterr().out
    assert "one RL step of configs/tiny.yaml" in out
    for stage in ["rollout", "old log-probs", "update", "rest"]:
        assert f"  {stage} " in out
    # which operators top a step this small depends on the machine's load: some aten op does
    assert "top operators" in out and "aten::" in out.split("top operators")[1]
    assert "matrix FLOPs:" in out and "float32" in out and "bfloat16" in out
    # the warm start was cached under --cache-dir, not runs/
    assert os.listdir(tmp_path / "_warmstart")


def test_step_flops_counts_matmuls_and_attention_exactly():
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    with torch.profiler.profile(record_shapes=True, with_flops=True) as profiler:
        torch.mm(a, b)
        F.scaled_dot_product_attention(q, k, v)
        a * 2.0  # elementwise work is not a matrix FLOP
    flops = bench_step.step_flops(profiler)
    assert flops == {"matmul": 2 * 64 * 32 * 16, "attention": 4 * 2 * 3 * 5 * 7 * 8}


def test_median():
    assert (
        bench_step.median([3.0, 1.0, 2.0]) == 2.0 and bench_step.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    )


@pytest.mark.parametrize("mode", ["--compare", "--shared"])
def test_compare_and_shared_run_child_benches(tmp_path, capsys, mode):
    """--compare against a tree (here the checkout itself) and --shared: one round, children at one
    thread.
    """
    extra = [mode, ROOT] if mode == "--compare" else [mode]
    bench_step.main(
        [
            "--tiny",
            "--cache-dir",
            str(tmp_path),
            "--threads",
            "1",
            "--rounds",
            "1",
            "--init",
            "random",
            *extra,
        ]
    )
    out = capsys.readouterr().out
    assert (
        ("speed-up of this checkout over" in out)
        if mode == "--compare"
        else ("two side by side" in out)
    )
