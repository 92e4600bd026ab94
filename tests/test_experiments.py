"""experiments.py: the study end to end on the tiny config, resuming, the verdict rule, and
eval.py's intervals."""

import json
import math
import os
import subprocess
import sys
import tarfile
import time

import pytest
import torch

import eval as evaluation
import experiments
import stats
import study_plan
import study_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny.yaml")
ARMS = ("pass1", "passk_analytic")


def study_command(out):
    return [
        sys.executable,
        os.path.join(REPO, "experiments.py"),
        "--config",
        TINY,
        "--arms",
        ",".join(ARMS),
        "--seeds",
        "1",
        "--steps",
        "2",
        "--jobs",
        "2",
        "--eval-problems",
        "4",
        "--eval-samples",
        "8",
        "--out",
        str(out / "runs"),
        "--results",
        str(out / "RESULTS.md"),
        "--run.threads",
        "1",
        "--sft.steps",
        "5",
        "--eval.every",
        "0",
        "--eval.n_problems",
        "4",
    ]


@pytest.fixture
def one_thread():
    """Tiny models sample faster on one thread, and the warm start sets torch's threads: restore
    them after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    result = subprocess.run(
        study_command(out), capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_runner_writes_results_table_plots_and_counts(study):
    report = (study / "RESULTS.md").read_text()
    for arm in ARMS:
        assert f"| {arm} | 1 |" in report  # a table row per arm, with its number of seeds
        saved = json.loads((study / "runs" / f"{arm}_s0" / study_report.EVAL_FILE).read_text())
        for name, size in (("in_dist", [5]), ("larger", [7])):
            chosen = saved["sets"][name]
            assert chosen["sizes"] == size and len(chosen["correct"]) == 4
            assert all(0 <= c <= 8 for c in chosen["correct"])
        assert saved["top_p"] == 0.95 and saved["n_samples"] == 8
    for figure in ("passk_vs_k", "training", "eta"):
        assert (study / "docs" / "results" / f"{figure}.png").stat().st_size > 0
        assert f"docs/results/{figure}.png" in report
    for number in range(1, 7):  # one verdict per claim; one seed cannot tell anything
        assert f"\n{number}. " in report
    # claims 1 and 3: both arms ran, one seed tells nothing
    assert report.count("**cannot tell**") == 2
    # claims 2, 4, 5, 6, MaxRL: arms not in --arms
    assert report.count("**not in this sweep's arms") == 5
    assert "cover@0.5" in report and "not run at this scale" not in report
    assert "git: `" in report and "wall time" in report and "--arms pass1,passk_analytic" in report
    assert "paired t-interval" in report and "hold for this one warm start" in report
    for arm in (
        ARMS
    ):  # the stored result: evaluation, trimmed metrics, the settings, the machine and the code
        stored = json.loads(
            (study / "results" / "study" / f"{arm}_s0" / study_report.RESULT_FILE).read_text()
        )
        assert stored["key"]["arm"] == arm and stored["key"]["config"] == os.path.relpath(
            TINY, REPO
        )
        assert stored["eval"]["sets"]["in_dist"]["correct"] and stored["metrics"][-1]["step"] == 2
        assert {"cpu", "threads", "device", "torch"} <= set(stored["eval"]["machine"])
        assert (
            len(stored["eval"]["code"]["code_sha1"]) == 12
            and len(stored["eval"]["warm_start_sha1"]) == 12
        )
        assert "train/loss" not in stored["metrics"][1] and "train/reward" in stored["metrics"][1]


def test_a_rerun_skips_finished_runs_and_an_unevaluated_one_resumes(study):
    runs = study / "runs"
    finished = runs / "pass1_s0" / study_report.EVAL_FILE
    before = finished.stat().st_mtime_ns
    (
        runs / "passk_analytic_s0" / study_report.EVAL_FILE
    ).unlink()  # trained, not yet evaluated (or stored)
    (study / "results" / "study" / "passk_analytic_s0" / study_report.RESULT_FILE).unlink()
    metrics = (runs / "passk_analytic_s0" / "metrics.jsonl").read_text()
    result = subprocess.run(
        study_command(study), capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 finished, 1 to run" in result.stdout
    assert finished.stat().st_mtime_ns == before
    assert (runs / "passk_analytic_s0" / study_report.EVAL_FILE).exists()
    commands = [
        line
        for line in (runs / "passk_analytic_s0" / "job.log").read_text().splitlines()
        if line.startswith("$ python train.py")
    ]
    assert len(commands) == 2 and "--resume" not in commands[0] and commands[1].endswith("--resume")
    assert (
        runs / "passk_analytic_s0" / "metrics.jsonl"
    ).read_text() == metrics  # training was not redone


def test_a_run_dir_made_with_other_settings_is_refused(study, one_thread, tmp_path):
    command = study_command(study)[2:]
    command[command.index("--steps") + 1] = "3"
    with pytest.raises(SystemExit) as stop:  # before any job starts: the warm start is cached
        experiments.main(command)
    assert "holds a result made with other settings" in str(stop.value) and "steps" in str(
        stop.value
    )
    with pytest.raises(
        SystemExit
    ) as stop:  # with a new result store, the run directories themselves refuse
        experiments.main([*command, "--results-dir", str(tmp_path / "elsewhere")])
    assert "holds a run made with other settings" in str(stop.value) and "--rl.steps" in str(
        stop.value
    )


def test_report_only_uses_the_stored_results_and_pack_makes_one_archive(
    study, one_thread, tmp_path
):
    command = study_command(study)[2:]
    command[command.index("--results") + 1] = str(tmp_path / "AGAIN.md")
    experiments.main([*command, "--results-dir", str(study / "results" / "study"), "--report-only"])
    assert "| pass1 | 1 |" in (tmp_path / "AGAIN.md").read_text()
    command[command.index("--seeds") + 1] = (
        "2"  # a partial sweep: seed 1 not stored, the report has seed 0
    )
    experiments.main([*command, "--results-dir", str(study / "results" / "study"), "--report-only"])
    partial = (tmp_path / "AGAIN.md").read_text()
    assert "| pass1 | 1 |" in partial and "| pass1 | 2 |" not in partial and "seeds 0;" in partial
    with pytest.raises(
        SystemExit
    ) as stop:  # nothing stored there: report-only refuses rather than train
        experiments.main([*command, "--results-dir", str(tmp_path / "empty"), "--report-only"])
    assert "--report-only: no stored result for pass1, passk_analytic" in str(stop.value)
    archive = experiments.pack(str(study / "results" / "study"), str(tmp_path / "study.tar.gz"))
    with tarfile.open(archive) as tar:
        assert {f"study/{arm}_s0/{study_report.RESULT_FILE}" for arm in ARMS} <= set(tar.getnames())


def test_a_stored_result_is_committed_in_the_repository_that_holds_it(study, tmp_path):
    repository = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repository)], check=True)
    for key, value in (("user.email", "study@example.com"), ("user.name", "study")):
        subprocess.run(["git", "-C", str(repository), "config", key, value], check=True)
    run_dir, results_dir = study / "runs" / "pass1_s0", repository / "results" / "study"
    experiments.store_result(
        str(run_dir), str(results_dir), "pass1_s0", {"arm": "pass1"}, commit=True
    )
    log = subprocess.run(
        ["git", "-C", str(repository), "log", "--name-only", "--format=%s"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (
        "Study result: pass1_s0" in log
        and f"results/study/pass1_s0/{study_report.RESULT_FILE}" in log
    )


def test_eval_cli_refuses_two_arms_as_seeds_and_bootstraps_one_run(
    study, capsys, one_thread, tmp_path
):
    runs = [str(study / "runs" / f"{arm}_s0") for arm in ARMS]
    with pytest.raises(SystemExit) as stop:  # two recipes are not two seeds of one
        evaluation.main(["--ckpt", *runs, "--n", "4", "--problems", "4", "--out", str(tmp_path)])
    assert "differ in more than the seed (rl.schedule)" in str(stop.value)
    rows = evaluation.main(
        ["--ckpt", runs[0], "--n", "4", "--problems", "4", "--out", str(tmp_path)]
    )
    assert "bootstrap over problems" in capsys.readouterr().out and [r["k"] for r in rows] == [
        1,
        2,
        3,
        4,
    ]
    assert all(r["low"] <= r["pass@k"] <= r["high"] for r in rows)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--rl.steps", "5"], ["--rl.steps", "--steps"]),
        (["--arms", "pass1,passk_magic"], ["passk_magic", "passk_analytic"]),
        (["--eval-problems", "99"], ["--eval-problems 99", "task.n_heldout=16"]),
        (["--rl.kk", "3"], ["rl.kk"]),
    ],
)
def test_bad_study_settings_are_one_line_errors(args, words, tmp_path):
    with pytest.raises(SystemExit) as stop:
        experiments.main(["--config", TINY, "--out", str(tmp_path / "runs"), *args])
    for word in words:
        assert word in str(stop.value)
    assert not (tmp_path / "runs").exists()


def test_seed_interval_matches_a_hand_computation():
    # mean 0.3, sample std 0.1, t(0.975, df=2) = 4.302653 from a t table: half-width 4.302653 * 0.1
    # / sqrt(3)
    interval = stats.seed_interval([0.2, 0.3, 0.4])
    assert interval["mean"] == pytest.approx(0.3)
    assert interval["half"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), abs=1e-6)
    assert (interval["low"], interval["high"]) == pytest.approx(
        (0.3 - interval["half"], 0.3 + interval["half"])
    )
    assert math.isnan(stats.seed_interval([0.5])["half"])


@pytest.mark.parametrize(
    "df, table", [(1, 12.706205), (2, 4.302653), (4, 2.776445), (10, 2.228139), (30, 2.042272)]
)
def test_t_quantile_matches_a_t_table(df, table):
    assert stats.t_quantile(0.975, df) == pytest.approx(table, abs=1e-5)
    assert stats.t_quantile(0.025, df) == pytest.approx(-table, abs=1e-5)


def test_paired_interval_matches_a_hand_computation():
    # differences 0.2, 0.15, 0.25: mean 0.2, sample std 0.05, t(0.975, 2) = 4.302653
    result = stats.paired_interval([0.5, 0.4, 0.6], [0.3, 0.25, 0.35])
    half = 4.302653 * 0.05 / math.sqrt(3)
    assert result["diff"] == pytest.approx(0.2) and result["half"] == pytest.approx(half, abs=1e-6)
    assert (result["low"], result["high"]) == pytest.approx((0.2 - half, 0.2 + half), abs=1e-6)
    # the same numbers unpaired: Welch's interval is wider (the noise the seeds share stays in it)
    assert stats.welch_interval([0.5, 0.4, 0.6], [0.3, 0.25, 0.35])["low"] < result["low"]
    assert math.isnan(stats.paired_interval([0.5], [0.3])["low"])
    with pytest.raises(ValueError, match="equal"):
        stats.paired_interval([0.5, 0.4], [0.3])


def test_welch_interval_matches_a_hand_computation():
    # each side: sample variance 1 over 3 values, so se^2 = 1/3 + 1/3 and df = (2/3)^2 / (2 *
    # (1/3)^2 / 2) = 4
    result = stats.welch_interval([1.0, 2.0, 3.0], [3.0, 4.0, 5.0])
    # t(0.975, 4) from a t table times the standard error
    half = 2.776445 * math.sqrt(1 / 3 + 1 / 3)
    assert result["df"] == pytest.approx(4.0)
    assert (result["diff"], result["low"], result["high"]) == pytest.approx(
        (-2.0, -2.0 - half, -2.0 + half), abs=1e-5
    )
    assert math.isnan(stats.welch_interval([1.0], [2.0, 3.0])["low"])


def test_arm_schedules_differ_only_in_the_advantage():
    steps = 10
    assert study_plan.arm_schedule("pass1", steps) == [
        {"until_step": 10, "advantage": "grpo", "k": 1}
    ]
    assert study_plan.arm_schedule("passk_then_pass1", steps) == [
        {"until_step": 5, "advantage": "passk_analytic", "k": experiments.K},
        {"until_step": 10, "advantage": "grpo", "k": 1},
    ]
    assert study_plan.arm_schedule("passk_analytic_k8", steps)[0]["k"] == 8

    def without_arm(args):  # every argument but the arm's schedule and run name
        pairs = dict(zip(args[::2], args[1::2]))
        return {
            key: value for key, value in pairs.items() if key not in ("--rl.schedule", "--run.name")
        }

    reference = without_arm(
        experiments.train_args("c.yaml", ["--rl.lr", "1"], [], "w", "pass1", 0, steps, "out")
    )
    for arm in experiments.ARM_DOCS:
        args = experiments.train_args("c.yaml", ["--rl.lr", "1"], [], "w", arm, 0, steps, "out")
        assert without_arm(args) == reference, arm


def test_a_resumed_job_counts_the_cpu_seconds_of_every_attempt(tmp_path, monkeypatch):
    """A job interrupted and run again used to record only its last attempt's CPU seconds."""

    def burn(seconds):
        start = time.process_time()
        while time.process_time() - start < seconds:
            pass

    attempts = []

    def fake_train(cfg):
        attempts.append(cfg.run.seed)
        burn(0.3)
        if len(attempts) == 1:
            raise KeyboardInterrupt  # the first attempt is stopped; its seconds must not be lost

    monkeypatch.setattr(experiments.train, "train", fake_train)
    monkeypatch.setattr(experiments, "training_finished", lambda run_dir, steps: False)
    monkeypatch.setattr(experiments, "evaluate_run", lambda run_dir, **_: {"sets": {}})
    job = ["--config", TINY]
    with pytest.raises(KeyboardInterrupt):
        experiments.run_job(str(tmp_path), job, n_problems=1, n_samples=1, heldout_seed=0)
    experiments.run_job(str(tmp_path), job, n_problems=1, n_samples=1, heldout_seed=0)
    seconds = json.loads((tmp_path / study_report.EVAL_FILE).read_text())["seconds"]
    assert len(attempts) == 2 and seconds["attempts"] == 2
    assert seconds["train_cpu"] >= 0.6  # both attempts' 0.3 CPU seconds (the last alone: about 0.3)
