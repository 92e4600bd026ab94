"""warm_start.py: a signal in the last step is honoured, a cache that cannot be written is skipped
with a note, demonstrations too long for the model and a task without any are one-line errors."""

import errno
import os
import signal

import pytest
import torch

import build
import config
import warm_start
from checkpoint import Stopped, latest_checkpoint
from tasks import Problem

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny.yaml")


def tiny_setup(tmp_path, block_size=None):
    cfg, _ = config.parse_args(
        [
            "--config",
            TINY,
            "--run.out_dir",
            str(tmp_path),
            "--sft.steps",
            "3",
            "--sft.batch_size",
            "4",
        ]
    )
    # below the config check's bound, if asked
    cfg.model.block_size = block_size or cfg.model.block_size
    torch.manual_seed(0)
    policy, tokenizer = build.build_policy(cfg, torch.device("cpu"))
    return cfg, policy, tokenizer, build.build_task(cfg)


def test_a_signal_in_the_warm_starts_last_step_stops_the_run_with_the_step_cached(
    tmp_path, monkeypatch
):
    cfg, policy, tokenizer, task = tiny_setup(tmp_path)
    real_step = warm_start.sft_step
    calls = []

    def signalled_in_the_last_step(*args):
        calls.append(1)
        if len(calls) == cfg.sft.steps:
            # a scheduler's stop, arriving during the last step
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(*args)

    monkeypatch.setattr(warm_start, "sft_step", signalled_in_the_last_step)
    notes = []
    with pytest.raises(Stopped) as stopped:
        warm_start.warm_start(cfg, policy, tokenizer, task, torch.device("cpu"), log=notes.append)
    assert stopped.value.signum == signal.SIGTERM
    assert latest_checkpoint(warm_start.warm_start_dir(cfg)).endswith(f"ckpt_{cfg.sft.steps}")
    assert any("stopped the warm start after step 3, cached" in note for note in notes)


def test_a_warm_start_cache_that_cannot_be_written_trains_without_it_and_says_so(
    tmp_path, monkeypatch
):
    cfg, policy, tokenizer, task = tiny_setup(tmp_path)

    def read_only(*args, **kwargs):  # tests run as root, where chmod would not stop a write
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(warm_start, "save_checkpoint", read_only)
    before = [p.detach().clone() for p in policy.parameters()]
    notes = []
    assert (
        warm_start.warm_start(cfg, policy, tokenizer, task, torch.device("cpu"), log=notes.append)
        is None
    )
    assert any("cannot cache it" in note and "Read-only file system" in note for note in notes)
    # trained all the same
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_demonstrations_longer_than_the_model_are_a_one_line_error_before_the_warm_start(tmp_path):
    cfg, policy, tokenizer, task = tiny_setup(tmp_path)
    longest = max(
        len(tokenizer.encode_prompt(p.prompt)) + len(tokenizer.encode(p.demo)) + 1
        for p in [*task.heldout, *task.train_batch("sft", 0, cfg.sft.batch_size)]
    )
    warm_start.check_demonstration_lengths(cfg, task, tokenizer, longest)  # fits exactly
    with pytest.raises(config.ConfigError) as refused:
        warm_start.check_demonstration_lengths(cfg, task, tokenizer, longest - 1)
    message = str(refused.value)
    assert (
        f"are {longest} tokens" in message
        and "model.block_size" in message
        and len(message.splitlines()) == 1
    )
    cfg.sft.steps = 0  # no warm start: nothing to check
    warm_start.check_demonstration_lengths(cfg, task, tokenizer, 1)


def test_a_demonstration_too_long_mid_warm_start_is_a_config_error_not_a_traceback(tmp_path):
    cfg, policy, tokenizer, task = tiny_setup(tmp_path, block_size=40)
    with pytest.raises(config.ConfigError, match="model.block_size=40"):
        warm_start.warm_start(
            cfg, policy, tokenizer, task, torch.device("cpu"), log=lambda *a: None
        )


class NoDemonstrations:
    """A task whose problems have no demonstration (as math problems from a file have none)."""

    name = "nodemo"
    heldout = [Problem("1+1=", "2", origin="data.jsonl:1")]

    def train_batch(self, stream, step, batch_size):
        return [Problem("2+2=", "4", origin="data.jsonl:2")] * batch_size


def test_a_task_without_demonstrations_is_refused_not_encoded(tmp_path):
    cfg, policy, tokenizer, _ = tiny_setup(tmp_path)
    with pytest.raises(
        config.ConfigError,
        match=r"no demonstrations to warm-start on \(data.jsonl:1\).*sft.steps 0",
    ):
        warm_start.check_demonstration_lengths(cfg, NoDemonstrations(), tokenizer, 128)
    with pytest.raises(config.ConfigError, match="no demonstrations"):
        warm_start.warm_start(
            cfg, policy, tokenizer, NoDemonstrations(), torch.device("cpu"), log=lambda *a: None
        )


def test_the_warm_start_ignores_rl_length_buckets(tmp_path):
    """rl.length_buckets is RL's (and not in the cache's key): a warm start trained with it set
    has the weights of one trained without, bit for bit, and the policy gets it back after."""
    weights = []
    for buckets in (1, 4):
        cfg, policy, tokenizer, task = tiny_setup(tmp_path / str(buckets))
        policy.length_buckets = buckets
        warm_start.warm_start(
            cfg, policy, tokenizer, task, torch.device("cpu"), log=lambda *a: None
        )
        assert policy.length_buckets == buckets
        weights.append(policy.state_dict())
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
