"""bench/gpu.py: its tiny mode runs every section on the CPU and writes the report's structure
(never its times); a hung section is killed with its children at its limit; a missing import or GPU
skips a section with one line; the maze check compares two runs' metrics."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time

import pytest

# loaded by path: bench/ on sys.path would shadow the top-level logprob.py with bench/logprob.py
BENCH_GPU = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "gpu.py"
)
spec = importlib.util.spec_from_file_location("bench_gpu", BENCH_GPU)
gpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu)

SECTIONS = ["sampler", "memory", "maze", "logprob"]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    done = subprocess.run(
        [sys.executable, os.path.join(gpu.ROOT, "bench", "gpu.py"), "--tiny", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / gpu.REPORT) as f:
        return out, f.read()


def test_the_tiny_run_reports_every_section_in_order_each_ok_with_its_wall_time(tiny_report):
    out, text = tiny_report
    assert text.startswith("# GPU measurements") and "- mode: tiny" in text and "- code: " in text
    headings = re.findall(r"^## (\w+):", text, flags=re.M)
    assert headings == SECTIONS
    statuses = re.findall(
        r"^\*\*status: ([^*]+)\*\* · wall \d+\.\d s \(limit \d+ s\), CPU \d+\.\d s$",
        text,
        flags=re.M,
    )
    assert statuses == ["ok"] * len(SECTIONS), text
    assert all(os.path.exists(out / "logs" / f"{name}.out") for name in SECTIONS)


def test_the_tiny_run_holds_each_benchmarks_own_output(tiny_report):
    out, text = tiny_report
    parts = dict(zip(SECTIONS, re.split(r"^## \w+:", text, flags=re.M)[1:]))
    assert "| passk static | greedy |" in parts["sampler"]
    assert "greedy tokens of passk static equal generate's: True" in parts["sampler"]
    assert "tiny lora on cpu" in parts["memory"] and "predicted peak" in parts["memory"]
    assert json.loads((out / "memory.json").read_text())[0]["shape"] == "tiny"
    assert "| M=16384, d=256, V=96, fwd+bwd | fused (chunked) |" in parts["logprob"]
    assert "| train/reward |" in parts["maze"] and "| time/" in parts["maze"]  # side by side
    assert re.search(r"At step 1, (\d+) of \1 metrics agree", parts["maze"])  # CPU against CPU


def test_a_section_past_its_limit_is_killed_with_its_children_and_the_next_one_runs(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    grandchild = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    )
    hang = [
        sys.executable,
        "-c",
        "import subprocess, sys; print('started', flush=True); "
        f"subprocess.run([sys.executable, '-c', {grandchild!r}])",
    ]
    (tmp_path / "logs").mkdir()
    hung = gpu.Section("hang", "sleeps", [hang, [sys.executable, "-c", "print('never')"]], (), 3)
    result = gpu.run_section(hung, time.monotonic() + 100, str(tmp_path))
    assert result["status"] == "timed out" and result["output"] == ["started"]
    grandchild_pid = int(pid_file.read_text())
    for _ in range(50):  # SIGKILL is delivered at once; its exit may take a moment to reap
        try:
            os.kill(grandchild_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the section's grandchild outlived its limit")
    quick = gpu.Section("quick", "prints", [[sys.executable, "-c", "print('done')"]], (), 30)
    assert gpu.run_section(quick, time.monotonic() + 100, str(tmp_path))["output"] == ["done"]


def test_a_section_that_fails_reports_its_exit_status_and_stderr(tmp_path):
    (tmp_path / "logs").mkdir()
    failing = gpu.Section(
        "fail", "exits 1", [[sys.executable, "-c", "import sys; sys.exit('bad')"]], (), 30
    )
    result = gpu.run_section(failing, time.monotonic() + 100, str(tmp_path))
    assert result["status"] == "failed (exit 1)" and result["errors"] == ["bad"]


def test_missing_imports_or_gpu_skip_a_section_with_one_line():
    section = gpu.Section("x", "needs", [], ("train", "cuda"), 10)
    full = {"torch": "2.13.0", "train": "ok", "cuda": "NVIDIA H100, 79.2 GiB"}
    assert gpu.skip_reason(section, full, tiny=False) is None
    no_gpu = {"torch": "2.13.0", "train": "ok"}
    assert gpu.skip_reason(section, no_gpu, tiny=False) == "no CUDA device (torch 2.13.0 sees none)"
    assert gpu.skip_reason(section, no_gpu, tiny=True) is None
    no_yaml = {"torch": "2.13.0", "train error": "ModuleNotFoundError: No module named 'yaml'"}
    assert (
        gpu.skip_reason(section, no_yaml, tiny=True)
        == "import train failed: ModuleNotFoundError: No module named 'yaml'"
    )
    assert (
        gpu.skip_reason(section, {"probe error": "no time left"}, tiny=True)
        == "the probe failed: no time left"
    )


def test_no_budget_skips_every_section_and_still_writes_the_report(tmp_path):
    report = gpu.main(["--tiny", "--out", str(tmp_path), "--budget", "0"])
    with open(report) as f:
        text = f.read()
    assert re.findall(r"^## (\w+):", text, flags=re.M) == SECTIONS
    assert text.count("**status: skipped**: the probe failed: no time left") == len(SECTIONS)


def test_the_maze_comparison_reads_both_runs_metrics(tmp_path):
    def write(name, rows):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    nan = float("nan")
    write(
        "device",
        [
            {"step": 0, "eval/pass@1": 0.2},
            {"step": 1, "train/reward": 0.5, "train/x": 1.0, "time/step_s": 1.0},
            {"step": 2, "train/reward": 0.25, "train/x": nan, "time/step_s": 3.0},
        ],
    )
    write(
        "cpu",
        [
            {"step": 0, "eval/pass@1": 0.3},
            {"step": 1, "train/reward": 0.5, "train/x": 1.1, "time/step_s": 6.0},
            {"step": 2, "train/reward": 0.75, "train/x": nan, "time/step_s": 2.0},
        ],
    )
    text = gpu.compare_runs(str(tmp_path / "device"), str(tmp_path / "cpu"))
    # step 2 differs by 0.5; step 0 (eval) is left out
    assert "| train/reward | 0.5 | 0.5 | 0.5 |" in text
    assert "| train/x | 1 | 1.1 | 0.1 |" in text  # NaN on both devices is no difference
    assert "At step 1, 1 of 2 metrics agree" in text  # timings are not metrics that should agree
    assert "| time/step_s | 2.000 | 4.000 | 2.00x |" in text
    assert gpu.compare_runs(str(tmp_path / "device"), str(tmp_path / "absent")).startswith(
        "No RL step"
    )
