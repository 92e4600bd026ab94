"""config.py: one-line errors that name the key, every shipped config parses, --help documents every
field."""

import dataclasses
import glob
import os
import subprocess
import sys

import pytest
import torch

import build
import config
import config_checks
import study_plan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny.yaml")


def run_cli(*args):
    """train.py in the test's own working directory (tests/conftest.py): its runs/ is the test's."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def tiny_config(tmp_path, *overrides):
    cfg, _ = config.parse_args(["--config", TINY, "--run.out_dir", str(tmp_path), *overrides])
    return cfg


@pytest.mark.parametrize(
    "args, words",
    [
        (["--rl.kk", "3"], ["unknown config key 'rl.kk'", "did you mean 'k'"]),
        (["--rl.k", "8"], ["rl.k=8", "rl.responses_per_prompt=8"]),
        (["--model.init", "/nonexistent/ckpt"], ["model.init", "/nonexistent/ckpt"]),
        (["--rl.lr", "fast"], ["rl.lr must be float"]),
        (["--rl.advantage", "passk_magic"], ["passk_magic", "passk_analytic"]),
        (["--optimiser.lr", "1"], ["unknown config section 'optimiser'"]),
        (["--run.name", "[abc"], ["--run.name '[abc' is not valid YAML"]),
        (
            [
                "--task.min_size",
                "3",
                "--task.max_size",
                "3",
                "--task.n_heldout",
                "500",
            ],  # 3x3 grids: 60 mazes in all
            ["only 60 distinct problems", "task.n_heldout"],
        ),
    ],
)
def test_a_bad_config_is_a_one_line_error_that_names_it(args, words):
    result = run_cli("--config", TINY, *args)
    assert result.returncode != 0
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml"))))
def test_every_shipped_config_parses_and_its_schedule_covers_the_run(path):
    cfg, _ = config.parse_args(["--config", path])
    if cfg.rl.schedule:
        assert cfg.rl.schedule[-1]["until_step"] == cfg.rl.steps, (
            "the last phase must end with the run"
        )


def test_a_missing_config_file_is_named():
    result = run_cli("--config", "configs/nope.yaml")
    assert (
        result.returncode != 0
        and "configs/nope.yaml" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_config_file_sections_and_schedule_are_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl:\n  schedule:\n    - {until_step: 5, advantage: grpo}\n")
    with pytest.raises(config.ConfigError, match=r"rl.schedule\[0\]"):
        config.parse_args(["--config", str(bad)])
    with pytest.raises(config.ConfigError, match="minibatches"):
        tiny_config(tmp_path, "--rl.minibatches", "3")


def test_help_lists_every_field_with_its_docstring():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "--rl.eps_high 0.28" in result.stdout and "clip-higher" in result.stdout


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("rl.lr", "-1", "rl.lr=-1.0 is out of range: it must be > 0"),
        ("rl.lr", "nan", "rl.lr=nan is out of range"),
        ("rl.prompts_per_step", "0", "rl.prompts_per_step=0 is out of range: it must be >= 1"),
        ("rl.minibatches", "0", "rl.minibatches=0 is out of range"),
        ("eval.n_problems", "0", "eval.n_problems=0 is out of range"),
        ("task.max_new_tokens", "0", "task.max_new_tokens=0 is out of range"),
        (
            "model.n_embd",
            "30",
            "model.n_embd=30 must split into model.n_head=2 heads of an even width",
        ),
        ("model.block_size", "40", "model.block_size=40 is shorter than the longest maze prompt"),
        ("run.checkpoint_every", "0", "run.checkpoint_every=0 is out of range"),
        ("rl.temperature", "0", "rl.temperature=0.0 is out of range: it must be > 0"),
        ("rl.top_p", "0", "rl.top_p=0.0 is out of range: it must be in (0, 1]"),
        ("rl.top_p", "2", "rl.top_p=2.0 is out of range"),
        ("run.device", "tpu", "run.device 'tpu' must be one of auto, cpu, cuda, mps or cuda:N"),
        ("reward.timeout_s", "0", "reward.timeout_s=0.0 is out of range"),
        ("reward.backend", "foo", "reward.backend 'foo' must be one of sympy, math_verify"),
        ("rl.steps", "-3", "rl.steps=-3 is out of range: it must be >= 0"),
        ("rl.epochs", "0", "rl.epochs=0 is out of range"),
        ("eval.every", "-1", "eval.every=-1 is out of range"),
        ("model.n_layer", "0", "model.n_layer=0 is out of range"),
        ("rl.grad_clip", "0", "rl.grad_clip=0.0 is out of range"),
        ("rl.eps_low", "-0.5", "rl.eps_low=-0.5 is out of range: it must be in [0, 1)"),
        ("task.loop_frac", "1.5", "task.loop_frac=1.5 is out of range"),
        ("rl.tis_cap", "0.5", "rl.tis_cap=0.5 is out of range"),
        ("rl.old_logprobs", "cached", "rl.old_logprobs 'cached' must be one of recompute, sampler"),
        ("run.name", "{a: [b", "--run.name '{a: [b' is not valid YAML"),
        ("run.seed", "99999999999999999999999", "run.seed=99999999999999999999999 is out of range"),
        ("run.seed", "-1", "run.seed=-1 is out of range: it must be in [0, 2**32)"),
        ("run.seed", str(2**32), f"run.seed={2**32} is out of range"),  # = seed 0's samples
        ("task.seed", str(2**63), f"task.seed={2**63} is out of range"),
        ("run.seed", "1" + "0" * 400, "run.seed=1000"),  # too large for a float: a range error
        ("eval.ks", "[true]", "eval.ks must be int, got True"),
        ("rl.schedule", "[{until_step: 2, advantage: [grpo], k: 2}]", "advantage must be str"),
        (
            "rl.schedule",
            "[{until_step: 2, advantage: grpo, k: true}]",
            "[0].k must be int, got True",
        ),
        ("rl.schedule", "[{until_step: true, advantage: grpo, k: 2}]", "until_step must be int"),
        ("run.name", "", "run.name '' must be a folder in run.out_dir"),
        ("run.name", "../x", "run.name '../x' must be a folder"),
        ("run.name", "/abs", "run.name '/abs' must be a folder"),
        ("run.name", "a//b", "run.name 'a//b' must be a folder"),
        ("run.name", "a/../../b", "run.name 'a/../../b' must be a folder"),
        ("run.name", "_warmstart", "run.name '_warmstart' must be a folder"),
        ("run.name", ".x", "run.name '.x' must be a folder"),
        ("model.lora_targets", "[1]", "model.lora_targets must be module names, got [1]"),
        ("model.lora_targets", "['']", "model.lora_targets must be module names"),
    ],
)
def test_every_value_is_checked_when_the_config_is_loaded(key, value, words, tmp_path):
    with pytest.raises(config.ConfigError) as error:
        tiny_config(tmp_path, f"--{key}", value)
    message = str(error.value)
    assert words in message and len(message.splitlines()) == 1, message


def test_every_numeric_field_has_a_declared_range():
    numeric = {
        f"{section}.{key}"
        for section, fields in dataclasses.asdict(config.Config()).items()
        for key, value in fields.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    unranged = numeric - set(config_checks.RANGES)
    assert not unranged, f"add these fields to config_checks.RANGES: {sorted(unranged)}"


@pytest.mark.parametrize("base", ["5", "[tiny.yaml]", "false"])
def test_a_base_that_is_not_a_file_name_is_named(base, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {base}\n")
    with pytest.raises(config.ConfigError, match=r"base in .*bad.yaml must be a config file name"):
        config.parse_args(["--config", str(bad)])


def test_the_run_names_the_study_gives_are_accepted(tmp_path):
    """run.name is a folder in run.out_dir, no part of it starting with _ or . (the shipped
    configs' names: test_every_shipped_config_parses...); nested names like study/a_s0 too."""
    names = [
        study_plan.run_name(arm, seed)
        for arm in study_plan.CORE_ARMS + study_plan.CLAIM_ARMS + study_plan.EXTENDED_ARMS
        for seed in (0, 12)
    ]
    assert "passk_analytic_s0" in names
    for name in names + ["run.2", "a-b", "study/pass1_s0"]:
        assert tiny_config(tmp_path, "--run.name", name).run.name == name


def test_broken_yaml_and_an_unwritable_run_directory_are_one_line_errors(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("rl: {steps: 4\nmodel: [\n")
    result = run_cli("--config", str(broken))
    assert (
        result.returncode != 0
        and "Traceback" not in result.stderr
        and "not valid YAML" in result.stderr
    )
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run_cli("--config", TINY, "--run.out_dir", str(blocker))
    message = result.stderr.strip()
    assert result.returncode != 0 and "Traceback" not in message and len(message.splitlines()) == 1
    assert "cannot write the run directory" in message


def test_a_bad_config_is_named_before_an_earlier_run_in_the_way(tmp_path):
    """Both hold: the config's error comes first (fixing it is what the user came to do)."""
    run_dir = tmp_path / "tiny"
    run_dir.mkdir()
    (run_dir / "latest").write_text("ckpt_2")
    (run_dir / "ckpt_2").mkdir()
    for bad in (
        ["--rl.k", "8"],
        ["--task.min_size", "3", "--task.max_size", "3", "--task.n_heldout", "500"],
    ):
        message = run_cli("--config", TINY, "--run.out_dir", str(tmp_path), *bad).stderr.strip()
        assert "already holds a run" not in message and len(message.splitlines()) == 1, message
    assert "already holds a run" in run_cli("--config", TINY, "--run.out_dir", str(tmp_path)).stderr


def test_a_run_that_fails_while_building_its_task_leaves_nothing_behind(tmp_path):
    bad = ["--task.min_size", "3", "--task.max_size", "3", "--task.n_heldout", "500"]
    result = run_cli("--config", TINY, "--run.out_dir", str(tmp_path), *bad)
    assert result.returncode != 0 and "only 60 distinct problems" in result.stderr
    assert not (tmp_path / "tiny").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_device_this_machine_lacks_is_one_line_that_names_what_it_has(tmp_path):
    result = run_cli("--config", TINY, "--run.out_dir", str(tmp_path), "--run.device", "cuda")
    message = result.stderr.strip()
    assert result.returncode != 0 and "Traceback" not in message and len(message.splitlines()) == 1
    assert "run.device cuda" in message and "it has cpu" in message
    assert not (tmp_path / "tiny").exists()


def test_a_config_file_given_without_config_is_suggested():
    result = run_cli(TINY)
    assert result.returncode != 0 and f"did you mean --config {TINY}?" in result.stderr


def test_the_task_registry_is_checked_before_anything_is_built(tmp_path):
    # the config alone: fine
    cfg, _ = config.parse_args(["--config", TINY, "--task.name", "sudoku"])
    assert cfg.task.name == "sudoku"
    with pytest.raises(config.ConfigError, match="task.name 'sudoku' is unknown; known: maze"):
        build.parse_config(["--config", TINY, "--task.name", "sudoku"])


def test_help_names_every_estimator():
    import advantage

    listed = config.field_docs()["rl.advantage"]
    assert all(name in listed for name in advantage.ESTIMATORS), listed


def test_tis_with_the_samplers_own_old_log_probs_is_refused(tmp_path):
    """rl.tis_cap weighs by old / sampler: with rl.old_logprobs sampler that is always 1."""
    with pytest.raises(config.ConfigError, match="rl.tis_cap .* needs rl.old_logprobs recompute"):
        tiny_config(tmp_path, "--rl.tis_cap", "2", "--rl.old_logprobs", "sampler")
