"""pass@k: the unbiased estimator against brute-force enumeration of all k-subsets; plots of several
runs; the CLI's refusals (a run without a checkpoint, numbers the sampler cannot use, an --n too big
for memory, a report already written) and its reports named by the checkpoint's step."""

import itertools
import json
import math
import os
import subprocess
import sys
from fractions import Fraction

import pytest
import torch

import build
import eval as evaluation
import plots
import train
from eval import pass_at_k, powers_of_two

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny.yaml")
FAST = ["--n", "2", "--problems", "2"]  # argparse keeps the last value: a test's own come after


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_the_share_of_k_subsets_with_a_correct_sample(n):
    for c in range(n + 1):
        samples = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            brute = sum(max(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_is_stable_for_thousands_of_samples():
    n, c, k = 5000, 37, 1000
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # Python integers: exact
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9)
    assert pass_at_k(4000, 0, 100) == 0.0 and pass_at_k(4000, 4000, 100) == 1.0
    assert pass_at_k(16, 3, 1) == pytest.approx(3 / 16)


def test_pass_at_k_rejects_impossible_arguments():
    for n, c, k in [(4, 5, 1), (4, 1, 0), (4, 1, 5), (4, -1, 1)]:
        with pytest.raises(ValueError, match="pass_at_k"):
            pass_at_k(n, c, k)


def test_powers_of_two():
    assert powers_of_two(16) == [1, 2, 4, 8, 16]
    assert powers_of_two(24) == [1, 2, 4, 8, 16, 24]


def test_plot_of_several_runs_draws_one_figure_labelled_by_advantage_and_k(tmp_path):
    for name, rl in (
        ("a", "rl: {advantage: passk_analytic, k: 4}\n"),
        (
            "b",
            "rl: {schedule: [{until_step: 2, advantage: passk_analytic, k: 4}, "
            "{until_step: 4, advantage: grpo, k: 1}]}\n",
        ),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(rl)
        rows = [{"step": s, "eval/pass@1": 0.1 * s, "eval/pass@2": 0.15 * s} for s in (0, 2, 4)]
        (tmp_path / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plots.run_label(tmp_path / "b") == "b: passk_analytic k=4 -> grpo k=1"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "eval.py"),
            "--plot",
            str(tmp_path / "a"),
            str(tmp_path / "b"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    figure = tmp_path / "compare_a_vs_b.png"
    assert figure.stat().st_size > 0 and str(figure) in result.stdout
    missing = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "eval.py"),
            "--plot",
            str(tmp_path / "a"),
            str(tmp_path / "nope"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert (
        missing.returncode != 0 and "Traceback" not in missing.stderr and "nope" in missing.stderr
    )


def test_the_summary_leaves_out_the_before_row_when_there_was_no_before_eval():
    after = {"eval/pass@1": 0.5, "eval/pass@2": 0.75, "eval/greedy": 0.5}
    table = evaluation.summary_table({}, after, [1, 2])
    assert (
        "before RL" not in table
        and "nan" not in table
        and "| after RL | 50.0 | 75.0 | 50.0 |" in table
    )
    assert "| before RL | 25.0 |" in evaluation.summary_table(
        {**after, "eval/pass@1": 0.25}, after, [1, 2]
    )


def exact_pass_at_k(n, c, k):
    """1 - C(n-c, k) / C(n, k) in exact rational arithmetic, as prod_{i=n-c+1}^{n} (1 - k/i)."""
    rest = Fraction(1)
    for i in range(n - c + 1, n + 1):
        rest *= 1 - Fraction(k, i)
    return 1 - rest


@pytest.mark.parametrize(
    "n, c, k",
    [(10**7, 1, 1), (10**7, 2, 1), (10**7, 3, 1), (10**7, 1, 2), (10**7, 5, 7), (10**4, 1, 1)],
)
def test_pass_at_k_keeps_its_relative_precision_on_tiny_values(n, c, k):
    """1 - exp(x) lost 5.3e-10 relative at n = 1e7, c = k = 1 (1.6e-10 at c = 3); -expm1(x) keeps
    about 1e-16."""
    exact = exact_pass_at_k(n, c, k)
    assert abs(Fraction(pass_at_k(n, c, k)) - exact) / exact < 1e-14


def test_cover_at_tau_against_a_hand_count():
    # n = 4: c/n = 0, .25, .25, .5, .75, 1 -> c >= 1: 5 of 6; c >= 2: 3; c >= 3: 2; c = 4: 1
    correct = [0, 1, 1, 2, 3, 4]
    assert [evaluation.cover_at(correct, 4, tau) for tau in (0.25, 0.5, 0.75, 1.0)] == [
        5 / 6,
        3 / 6,
        2 / 6,
        1 / 6,
    ]
    # exact at the threshold: 9 of 12 is 0.75 (a float c/n >= tau can go either way on such ties)
    assert evaluation.cover_at([9, 8], 12, 0.75) == 0.5 and evaluation.cover_at([3], 10, 0.3) == 1.0
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="cover_at"):
            evaluation.cover_at(correct, 4, bad)
    with pytest.raises(ValueError, match="cover_at"):
        evaluation.cover_at([5], 4, 0.5)


def test_evaluate_returns_cover_beside_pass_at_k_from_the_same_samples(monkeypatch):
    counts = [0, 1, 1, 2, 3, 4]
    monkeypatch.setattr(
        evaluation,
        "count_correct",
        lambda *a, n, **kw: (counts if n == 4 else [1] * 6, 0.5, 3.0),
    )
    metrics = evaluation.evaluate(None, None, [None] * 6, "maze", n=4, max_new_tokens=8, ks=[1, 4])
    assert metrics["eval/pass@1"] == pytest.approx(sum(counts) / 24)
    assert [metrics[f"eval/cover@{t}"] for t in ("0.25", "0.5", "0.75", "1")] == [
        5 / 6,
        3 / 6,
        2 / 6,
        1 / 6,
    ]
    assert metrics["eval/greedy"] == 1.0
    table = evaluation.summary_table({}, metrics, [1, 4])
    assert "| | pass@1 | pass@4 | greedy | cover@0.25 | cover@0.5 | cover@0.75 | cover@1 |" in table
    assert table.splitlines()[-1].endswith("| 100.0 | 83.3 | 50.0 | 33.3 | 16.7 |")


def test_pass_at_1_is_the_success_rate_to_the_last_bit():
    import eval as evaluation

    assert all(evaluation.pass_at_k(16, c, 1) == c / 16 for c in range(17))
    assert all(evaluation.pass_at_k(10**7, c, 1) == c / 10**7 for c in (1, 3, 12345))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real tiny maze run with ckpt_2 and ckpt_4 (`latest`): 3 SFT steps, 4 RL steps (seconds)."""
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("eval_run")
    cfg, _ = build.parse_config(
        ["--config", TINY, "--run.out_dir", str(root), "--run.name", "x", "--run.threads", "1"]
        + ["--sft.steps", "3", "--rl.steps", "4", "--eval.every", "0", "--eval.before", "false"]
        + ["--eval.n_problems", "2", "--eval.n_samples", "2", "--eval.ks", "[1, 2]"]
    )
    train.train(cfg, log=lambda *_: None)
    torch.set_num_threads(threads)
    assert {"ckpt_2", "ckpt_4", "config.yaml", "latest"} <= set(os.listdir(root / "x"))
    return root / "x"


def one_line_error(argv) -> str:
    """main(argv)'s refusal: its message, checked to be one line and no traceback."""
    torch.set_num_threads(1)
    with pytest.raises(SystemExit) as stop:
        evaluation.main(argv)
    message = str(stop.value)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def test_a_run_stopped_before_its_first_checkpoint_has_no_checkpoint_to_evaluate(
    tiny_run, tmp_path
):
    early = tmp_path / "early"  # what a Ctrl-C before the first checkpoint leaves
    early.mkdir()
    (early / "config.yaml").write_text((tiny_run / "config.yaml").read_text())
    message = one_line_error(["--ckpt", str(early), *FAST])
    assert str(early) in message and "no checkpoint" in message and "no weights" in message


@pytest.mark.parametrize(
    "args, words",
    [
        (["--problems", "-3"], "--problems -3: at least 1 problem (0 = all)"),
        (["--problems", "-100"], "--problems -100: at least 1"),
        (["--temperature", "-1"], "--temperature -1.0: a number >= 0 (0 is greedy)"),
        (["--temperature", "nan"], "--temperature nan: a number >= 0"),
        (["--top-p", "0"], "--top-p 0.0: in (0, 1]"),
        (["--top-p", "5"], "--top-p 5.0: in (0, 1]"),
        (["--n", "0"], "--n 0: at least 1"),
        (["--batch", "0"], "--batch 0: at least 1"),
        (["--max-new-tokens", "0"], "--max-new-tokens 0: at least 1"),
    ],
)
def test_numbers_the_sampler_cannot_use_are_refused_before_any_evaluation(
    args, words, tiny_run, capsys
):
    torch.set_num_threads(1)
    with pytest.raises(SystemExit) as stop:
        evaluation.main(["--ckpt", str(tiny_run), *FAST, *args])
    error = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in error
    assert error.splitlines()[-1].split(": error: ")[1].startswith(words)  # prog: error: ...
    assert not os.path.exists("runs")  # nothing evaluated, nothing written


@pytest.mark.parametrize("n", [10**14, 10**30])
def test_an_n_too_big_for_memory_is_a_one_line_error(n, tiny_run):
    """10**14 samples ask the allocator for 800 TB at once (refused at once, nothing is touched);
    10**30 does not fit torch's sizes."""
    message = one_line_error(["--ckpt", str(tiny_run), *FAST, "--n", str(n)])
    assert f"out of memory sampling {n} responses" in message and "lower --n" in message
    assert not os.path.exists("runs")


def test_each_step_gets_its_own_report_and_none_is_overwritten_without_overwrite(tiny_run):
    torch.set_num_threads(1)
    for step in (2, 4):
        evaluation.main(["--ckpt", str(tiny_run / f"ckpt_{step}"), *FAST])
    for step in (2, 4):
        report = open(f"runs/eval/x_step{step}/passk.md").read()
        assert report.startswith(f"x step {step} on held-out maze: 2 problems, n = 2")
    before = open("runs/eval/x_step4/passk.md").read()
    for out in ([], ["--out", "runs/eval/x_step4"]):  # the run's latest is ckpt_4: the same folder
        message = one_line_error(["--ckpt", str(tiny_run), *FAST, "--n", "3", *out])
        assert "runs/eval/x_step4 already holds a report" in message and "--overwrite" in message
    assert open("runs/eval/x_step4/passk.md").read() == before
    evaluation.main(["--ckpt", str(tiny_run), *FAST, "--n", "3", "--overwrite"])
    assert "n = 3" in open("runs/eval/x_step4/passk.md").read()
