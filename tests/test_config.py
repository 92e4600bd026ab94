"""config.py: one-line errors that name the key, every shipped config parses, --help documents every field."""
import glob
import os
import subprocess
import sys

import pytest

import config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny.yaml")


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def tiny_config(tmp_path, *overrides):
    cfg, _ = config.parse_args(["--config", TINY, "--run.out_dir", str(tmp_path), *overrides])
    return cfg


@pytest.mark.parametrize("args, words", [
    (["--rl.kk", "3"], ["unknown config key 'rl.kk'", "did you mean 'k'"]),
    (["--rl.k", "8"], ["rl.k=8", "rl.responses_per_prompt=8"]),
    (["--model.init", "/nonexistent/ckpt"], ["model.init", "/nonexistent/ckpt"]),
    (["--rl.lr", "fast"], ["rl.lr must be float"]),
    (["--rl.advantage", "passk_magic"], ["passk_magic", "passk_analytic"]),
    (["--optimiser.lr", "1"], ["unknown config section 'optimiser'"]),
    (["--task.min_size", "3", "--task.max_size", "3", "--task.n_heldout", "500"],  # 3x3 grids: 60 mazes in all
     ["only 60 distinct problems", "task.n_heldout"]),
])
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
        assert cfg.rl.schedule[-1]["until_step"] == cfg.rl.steps, "the last phase must end with the run"


def test_a_missing_config_file_is_named():
    result = run_cli("--config", "configs/nope.yaml")
    assert result.returncode != 0 and "configs/nope.yaml" in result.stderr and "Traceback" not in result.stderr


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
