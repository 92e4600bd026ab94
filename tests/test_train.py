"""train.py: resume, skipped non-finite updates, the zero-advantage skip, schedules, a run never
overwritten,
and a real learning test."""

import json
import math
import os
import signal
import subprocess
import sys
import time
import zlib

import pytest
import torch
import yaml

import advantage
import checkpoint
import build
import config
import optim
import ppo
import train
from model import GPT

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny.yaml")


def tiny_config(tmp_path, *overrides):
    cfg, _ = config.parse_args(["--config", TINY, "--run.out_dir", str(tmp_path), *overrides])
    return cfg


def run_cli(*args):
    """train.py in the test's own working directory (tests/conftest.py): its runs/ is the test's."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def train_lines(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return {
        r["step"]: {k: v for k, v in r.items() if k.startswith("train/")}
        for r in rows
        if "train/reward" in r
    }


def interrupt_rl_step(monkeypatch, at_step):
    """train.rl_step raising KeyboardInterrupt (as Ctrl-C would) when it reaches `at_step`; returns
    the real one."""
    real_step = train.rl_step

    def stop(step, *args, **kwargs):
        if step == at_step:
            raise KeyboardInterrupt
        return real_step(step, *args, **kwargs)

    monkeypatch.setattr(train, "rl_step", stop)
    return real_step


# issue 24's speed options, on: the resumed run reproduces the straight one with them too
FAST = ("--rl.length_buckets", "2", "--rl.shared_prompt_cache", "true")
FAST += ("--rl.old_logprobs", "sampler")


@pytest.mark.parametrize("options", [(), FAST], ids=["defaults", "fast"])
def test_resume_after_ctrl_c_continues_with_the_same_steps_and_metrics(
    tmp_path, monkeypatch, options
):
    straight = tiny_config(tmp_path, "--run.name", "straight", *options)
    train.train(straight, log=lambda *a: None)

    interrupted = tiny_config(tmp_path, "--run.name", "interrupted", *options)
    real_step = interrupt_rl_step(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train.train(interrupted, log=lambda *a: None)
    run_dir = tmp_path / "interrupted"
    assert os.path.basename(checkpoint.latest_checkpoint(run_dir)) == "ckpt_2"  # Ctrl-C saved
    monkeypatch.setattr(train, "rl_step", real_step)
    resumed = tiny_config(tmp_path, "--run.name", "interrupted", "--resume", *options)
    train.train(resumed, log=lambda *a: None)

    expected, got = train_lines(tmp_path / "straight"), train_lines(run_dir)
    assert sorted(got) == sorted(expected) == [1, 2, 3, 4]
    for step in expected:
        for key, value in expected[step].items():
            if isinstance(value, str):  # train/advantage names the estimator: compared exactly
                assert got[step][key] == value, (step, key)
            else:
                assert got[step][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (step, key)
    a = GPT.from_weights(checkpoint.latest_checkpoint(tmp_path / "straight")).state_dict()
    b = GPT.from_weights(checkpoint.latest_checkpoint(run_dir)).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)


def test_a_finished_run_resumed_with_more_steps_trains_on_and_evaluates_again(tmp_path):
    straight = train.train(
        tiny_config(tmp_path, "--run.name", "straight", "--eval.every", "0"), log=lambda *a: None
    )
    train.train(
        tiny_config(tmp_path, "--run.name", "extended", "--eval.every", "0", "--rl.steps", "2"),
        log=lambda *a: None,
    )
    extended = train.train(
        tiny_config(tmp_path, "--run.name", "extended", "--eval.every", "0", "--resume"),
        log=lambda *a: None,
    )
    assert extended == straight  # the lr is constant after warmup: 2 + 2 steps are the 4-step run
    assert train_lines(tmp_path / "extended") == train_lines(tmp_path / "straight")
    with open(tmp_path / "extended" / "metrics.jsonl") as f:
        eval_steps = [row["step"] for row in map(json.loads, f) if "eval/pass@1" in row]
    assert eval_steps == [0, 2, 4]  # the 2-step run's final eval, then the extended run's own


def test_a_non_finite_loss_skips_the_update_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(
        advantage.ESTIMATORS,
        "nan_test",
        lambda rewards, *, k: torch.full_like(rewards, float("nan")),
    )
    cfg = tiny_config(tmp_path, "--rl.advantage", "nan_test", "--sft.steps", "0")
    task = build.build_task(cfg)
    policy, tokenizer = build.build_policy(cfg, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    optimizer = optim.make_optimizer(policy, cfg.rl.lr, 0.0)
    metrics = train.rl_step(0, cfg, policy, None, optimizer, task, tokenizer, torch.device("cpu"))
    assert metrics["train/skipped_updates"] == cfg.rl.minibatches
    for name, param in policy.named_parameters():
        assert torch.equal(param, before[name]), name


def test_skipping_zero_advantage_prompts_gives_the_same_update(tmp_path, monkeypatch):
    """rl.skip_zero_advantage leaves prompts whose advantages are all 0 out of the forward/backward:
    the weights
    after two steps (one with half the prompts at 0, one with all of them, where only Adam's
    momentum moves the
    weights) equal those of running every row; the denominators of every loss_agg are the full
    mini-batch's."""

    def half_zero(
        rewards, *, k
    ):  # [B, N]: a fixed spread of advantages on odd prompts, 0 on even ones
        spread = torch.linspace(-1, 1, rewards.shape[1]).expand_as(rewards).clone()
        spread[::2] = 0
        return spread

    monkeypatch.setitem(advantage.ESTIMATORS, "half_zero", half_zero)
    monkeypatch.setitem(
        advantage.ESTIMATORS, "all_zero", lambda rewards, *, k: torch.zeros_like(rewards)
    )
    for loss_agg in ("token_mean", "seq_mean", "constant"):
        weights, fractions, stats = [], [], []
        for skip in ("true", "false"):
            cfg = tiny_config(
                tmp_path,
                "--sft.steps",
                "0",
                "--rl.loss_agg",
                loss_agg,
                "--rl.skip_zero_advantage",
                skip,
                "--rl.schedule",
                "[{until_step: 1, advantage: half_zero, k: 1}, "
                "{until_step: 2, advantage: all_zero, k: 1}]",
            )
            torch.manual_seed(0)
            task = build.build_task(cfg)
            policy, tokenizer = build.build_policy(cfg, torch.device("cpu"))
            optimizer = optim.make_optimizer(policy, 1e-2, 0.0)
            steps = [
                train.rl_step(
                    step, cfg, policy, None, optimizer, task, tokenizer, torch.device("cpu")
                )
                for step in (0, 1)
            ]
            fractions.append([metrics["train/updated_rows_frac"] for metrics in steps])
            stats.append(
                [
                    metrics[name]
                    for metrics in steps
                    for name in ("train/clip_frac", "train/approx_kl")
                ]
            )
            weights.append({n: p.detach().clone() for n, p in policy.named_parameters()})
        # the skip happened, and only when asked
        assert fractions == [[0.5, 0.0], [1.0, 1.0]], fractions
        # over rows with a signal either way
        assert stats[0] == pytest.approx(stats[1], rel=1e-4, abs=1e-9)
        # approx_kl of the second update of step 0 is not 0: the stats were compared
        assert stats[0][1] > 0
        for name in weights[0]:
            torch.testing.assert_close(
                weights[0][name], weights[1][name], atol=1e-6, rtol=1e-5, msg=name
            )


def test_schedule_switches_the_estimator_and_logs_the_phase(tmp_path):
    cfg = tiny_config(
        tmp_path,
        "--rl.schedule",
        "[{until_step: 2, advantage: passk_analytic, k: 2}, "
        "{until_step: 4, advantage: grpo, k: 1}]",
        "--eval.every",
        "0",
    )
    train.train(cfg, log=lambda *a: None)
    lines = train_lines(tmp_path / "tiny")
    assert [lines[s]["train/advantage"] for s in (1, 2, 3, 4)] == ["passk_analytic"] * 2 + [
        "grpo"
    ] * 2
    assert [lines[s]["train/k"] for s in (1, 2, 3, 4)] == [2, 2, 1, 1]
    assert (tmp_path / "tiny" / "curves.png").exists() and (
        tmp_path / "tiny" / "passk.png"
    ).exists()


def test_rl_raises_the_reward(tmp_path):
    """A real learning test: a briefly warm-started tiny GPT on 3x3 mazes (60 grids in all, 16 held
    out).

    Fixed seed, so the run is deterministic; measured at this revision: held-out pass@1 0.23 ->
    0.33, training reward (mean of the first / last 10 steps) 0.2 -> 0.4. With the advantage's sign
    flipped both fall, so the test fails when the update does not follow the reward.
    """
    cfg = tiny_config(
        tmp_path,
        "--task.min_size",
        "3",
        "--task.max_size",
        "3",
        "--sft.steps",
        "250",
        "--rl.steps",
        "60",
        "--rl.advantage",
        "grpo",
        "--rl.lr",
        "1e-3",
        "--rl.prompts_per_step",
        "16",
        "--rl.minibatches",
        "1",
        "--eval.every",
        "0",
        "--eval.n_problems",
        "16",
        "--eval.n_samples",
        "16",
        "--eval.ks",
        "[1]",
    )
    after = train.train(cfg, log=lambda *a: None)
    with open(tmp_path / "tiny" / "metrics.jsonl") as f:
        before = json.loads(f.readline())["eval/pass@1"]
    rewards = [line["train/reward"] for _, line in sorted(train_lines(tmp_path / "tiny").items())]
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert last > first + 0.1, rewards
    assert after["eval/pass@1"] > before + 0.05, (before, after["eval/pass@1"])


def test_starting_a_run_where_one_exists_refuses_and_leaves_the_old_run_as_it_was(tmp_path):
    train.train(tiny_config(tmp_path, "--eval.every", "0"), log=lambda *a: None)
    run_dir = tmp_path / "tiny"
    # every file of the run but its lock, which each start takes (and names its pid in)
    snapshot = lambda: {
        str(p): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != "lock"
    }
    before = snapshot()
    assert any("ckpt_4" in p for p in before)
    result = run_cli("--config", TINY, "--run.out_dir", str(tmp_path), "--rl.advantage", "grpo")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "already holds a run" in message, message
    assert "--resume" in message and "--run.name" in message
    assert snapshot() == before  # not a byte of the older run changed
    # the README's two demo commands write two runs: the Pass@1 config has its own run name
    names = {
        config.parse_args(["--config", os.path.join(REPO, "configs", f)])[0].run.name
        for f in ("maze.yaml", "maze_pass1.yaml")
    }
    assert len(names) == 2


# ----------------------------------------------------------------------------- loss options, by
# hand


class ScriptedPolicy(torch.nn.Module):
    """A stand-in policy whose log-probs are old_logp + shift for the rows it is given (the row
    index rides in
    input_ids[:, 0]): the PPO ratio of every token is exp(shift), a parameter the test sets."""

    def __init__(self, old_logp, shift):
        super().__init__()
        self.old_logp = old_logp
        self.shift = torch.nn.Parameter(shift.clone())  # [R, L]

    def forward(self, input_ids, attention_mask, response_mask, **options):
        rows = input_ids[:, 0]
        return (self.old_logp[rows] + self.shift[rows]) * response_mask, None


def scripted_update(
    tmp_path, advantages, shift, response_mask, *overrides, sampler_logp=None, loss_mask=None
):
    """ppo_update on one mini-batch of R rows (N = R responses of one prompt); returns (loss, stats,
    grad of shift)."""
    R, L = response_mask.shape
    cfg = tiny_config(
        tmp_path,
        "--rl.responses_per_prompt",
        str(R),
        "--rl.minibatches",
        "1",
        "--rl.k",
        "1",
        "--rl.grad_clip",
        "1e9",
        *overrides,
    )
    old_logp = torch.full((R, L), -1.0)
    batch = ppo.StepBatch(
        input_ids=torch.arange(R)[:, None],
        attention_mask=torch.ones(R, 1),
        response_mask=response_mask,
        loss_mask=response_mask if loss_mask is None else loss_mask,
        sampler_logp=old_logp if sampler_logp is None else sampler_logp,
        valid_vocab=10,
        skip_zero_advantage=False,
        old_logp=old_logp,
        advantages=torch.tensor(advantages)[:, None],
        zero_advantage=torch.zeros(R, dtype=torch.bool),
    )
    policy = ScriptedPolicy(old_logp, shift)
    update = ppo.ppo_update(cfg, policy, batch, torch.arange(R))
    stats = {
        "clip_frac": update["clipped"],
        "dual_clip_frac": update["dual_clipped"],
        "tis_capped_frac": update["tis_capped"],
        "approx_kl": update["approx_kl"],
        "kl": update["kl"],
    }
    return update["loss"], stats, policy.shift.grad


def test_truncated_importance_sampling_weighs_tokens_by_the_capped_sampler_gap(tmp_path):
    mask = torch.ones(2, 3)
    shift = torch.zeros(2, 3)  # ratio 1: each token's PPO loss is -A
    sampler = torch.tensor(
        [
            [-1.0, -1.0 - math.log(1.5), -1.0 - math.log(4.0)],  # pi_old / pi_sampler 1, 1.5, 4
            [-1.0 + math.log(2.0), -1.0, -1.0],
        ]
    )  # 0.5, 1, 1
    loss, stats, grad = scripted_update(
        tmp_path, [1.0, -2.0], shift, mask, "--rl.tis_cap", "2.0", sampler_logp=sampler
    )
    weights = torch.tensor([[1.0, 1.5, 2.0], [0.5, 1.0, 1.0]])  # min(ratio, 2): the 4 is capped
    expected = (
        -torch.tensor([[1.0], [-2.0]]) * weights
    ).sum().item() / 6  # token mean over 6 tokens
    assert loss == pytest.approx(expected, rel=1e-6)
    # d ratio / d shift = 1 here
    torch.testing.assert_close(grad, -torch.tensor([[1.0], [-2.0]]) * weights / 6)
    assert stats["tis_capped_frac"] == pytest.approx(1 / 6)
    # sampler and trainer agree: every weight is exactly 1, the same loss and gradient as without
    # TIS
    agreed, _, agreed_grad = scripted_update(
        tmp_path, [1.0, -2.0], shift, mask, "--rl.tis_cap", "2.0"
    )
    plain, _, plain_grad = scripted_update(tmp_path, [1.0, -2.0], shift, mask)
    assert agreed == plain and torch.equal(agreed_grad, plain_grad)


def test_dual_clip_bounds_a_negative_advantage_with_a_large_ratio(tmp_path):
    mask = torch.ones(3, 1)
    shift = torch.tensor([[math.log(5.0)], [math.log(2.0)], [math.log(5.0)]])  # ratios 5, 2, 5
    advantages = [-1.0, -1.0, 1.0]
    loss, stats, grad = scripted_update(tmp_path, advantages, shift, mask, "--rl.dual_clip", "3.0")
    # A = -1, r = 5: max(-rA, -clip(r)A) = max(5, 1.28) = 5, bounded by -cA = 3 (no gradient there);
    # A = -1, r = 2: 2 < 3, unbounded; A = +1, r = 5: -min(5, 1.28) = -1.28, clipped (no gradient
    # either)
    assert loss == pytest.approx((3.0 + 2.0 - 1.28) / 3, rel=1e-6)
    # d(-rA)/d shift = -A r at r = 2
    torch.testing.assert_close(grad, torch.tensor([[0.0], [2.0 / 3], [0.0]]))
    assert stats["dual_clip_frac"] == pytest.approx(1 / 3)
    without, _, _ = scripted_update(tmp_path, advantages, shift, mask)
    assert without == pytest.approx((5.0 + 2.0 - 1.28) / 3, rel=1e-6)
    with pytest.raises(config.ConfigError, match="rl.dual_clip=1.2 must be 0"):
        tiny_config(tmp_path, "--rl.dual_clip", "1.2")


def test_seq_mean_with_masked_truncated_rows_averages_over_the_rows_left(tmp_path):
    response_mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    loss_mask = response_mask * torch.tensor([[1.0], [1.0], [0.0]])  # the third row was truncated
    loss, _, _ = scripted_update(
        tmp_path,
        [1.0, 2.0, 4.0],
        torch.zeros(3, 2),
        response_mask,
        "--rl.loss_agg",
        "seq_mean",
        "--rl.mask_truncated",
        "true",
        loss_mask=loss_mask,
    )
    assert loss == pytest.approx((-1.0 - 2.0) / 2)  # two rows count, not three


def test_passk_full_with_leftover_responses_is_refused(tmp_path):
    with pytest.raises(
        config.ConfigError,
        match="passk_full needs rl.responses_per_prompt=8 to be a multiple of k=3",
    ):
        tiny_config(tmp_path, "--rl.advantage", "passk_full", "--rl.k", "3")
    tiny_config(tmp_path, "--rl.advantage", "passk_full", "--rl.k", "4")


def test_mean_entropy_by_token_or_by_response():
    entropy = torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]])  # one prompt, N = 2
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    assert ppo.mean_entropy(entropy, mask, 2, "token").item() == pytest.approx(8 / 5)
    assert ppo.mean_entropy(entropy, mask, 2, "response").item() == pytest.approx((1.0 + 4.0) / 2)


# ----------------------------------------------------------------------------- dynamic sampling


def half_silent_rewards(task_name, texts, golds, **options):
    """Half the prompts (by their maze) are all wrong, and so silent; the others alternate 1, 0 over
    their rows."""
    return [0.0 if zlib.crc32(gold.encode()) % 2 else float(i % 2) for i, gold in enumerate(golds)]


def test_dynamic_sampling_fills_the_batch_with_signal_stops_at_its_bound_and_resumes_alike(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(ppo.reward, "score_batch", half_silent_rewards)
    cfg = tiny_config(tmp_path, "--sft.steps", "0", "--rl.resample_rounds", "3")
    task = build.build_task(cfg)
    policy, tokenizer = build.build_policy(cfg, torch.device("cpu"))
    metrics = train.rl_step(
        0,
        cfg,
        policy,
        None,
        optim.make_optimizer(policy, 1e-3, 0.0),
        task,
        tokenizer,
        torch.device("cpu"),
    )
    B = cfg.rl.prompts_per_step
    # full, all with signal
    assert (
        metrics["train/nonzero_advantage_prompts"] == B
        and metrics["train/zero_advantage_frac"] == 0.0
    )
    assert metrics["train/resampled_prompts"] in (B, 2 * B, 3 * B)
    monkeypatch.setattr(
        ppo.reward, "score_batch", lambda task_name, texts, golds, **options: [0.0] * len(texts)
    )
    bound = train.rl_step(
        1,
        cfg,
        policy,
        None,
        optim.make_optimizer(policy, 1e-3, 0.0),
        task,
        tokenizer,
        torch.device("cpu"),
    )
    # gave up at 3 rounds
    assert (
        bound["train/resampled_prompts"] == 3 * B and bound["train/nonzero_advantage_prompts"] == 0
    )
    monkeypatch.setattr(ppo.reward, "score_batch", half_silent_rewards)
    straight = tiny_config(
        tmp_path, "--run.name", "straight", "--rl.resample_rounds", "2", "--eval.every", "0"
    )
    train.train(straight, log=lambda *a: None)
    real_step = interrupt_rl_step(monkeypatch, 2)
    interrupted = tiny_config(
        tmp_path, "--run.name", "interrupted", "--rl.resample_rounds", "2", "--eval.every", "0"
    )
    with pytest.raises(KeyboardInterrupt):
        train.train(interrupted, log=lambda *a: None)
    monkeypatch.setattr(train, "rl_step", real_step)
    train.train(
        tiny_config(
            tmp_path,
            "--run.name",
            "interrupted",
            "--rl.resample_rounds",
            "2",
            "--eval.every",
            "0",
            "--resume",
        ),
        log=lambda *a: None,
    )
    expected, got = train_lines(tmp_path / "straight"), train_lines(tmp_path / "interrupted")
    assert [got[s]["train/resampled_prompts"] for s in got] == [
        expected[s]["train/resampled_prompts"] for s in expected
    ]
    for step in expected:
        assert got[step]["train/reward"] == expected[step]["train/reward"], step


# ----------------------------------------------------------------------------- nothing lost


def every_metric(run_dir) -> list[dict]:
    """metrics.jsonl without the wall-clock keys: what an interrupted and resumed run must reproduce
    exactly."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [
            {k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in f
        ]


def final_weights(run_dir) -> dict:
    return GPT.from_weights(checkpoint.latest_checkpoint(run_dir)).state_dict()


def signal_once(function, calls: list, signum=signal.SIGINT):
    """`function`, wrapped to send this process `signum` right after its calls[0]-th call (1-based)
    returns, or
    before it when calls[1] is "before"."""
    count = [0]

    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] == calls[0] and calls[1] == "before":
            os.kill(os.getpid(), signum)
        result = function(*args, **kwargs)
        if count[0] == calls[0] and calls[1] == "after":
            os.kill(os.getpid(), signum)
        return result

    return wrapped


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    train.train(tiny_config(out, "--run.name", "straight"), log=lambda *a: None)
    return out


# where the signal lands: (the module attribute to wrap, its n-th call, before or after it).
# tiny.yaml: 4 steps of
# 4 mini-batch updates, an evaluation before RL, after step 2 and at the end, a checkpoint every 2
# steps.
INTERRUPTS = {
    "rollout": ("generate", (2, "before")),  # while sampling step 2
    "after the first update": (
        "ppo_update",
        (5, "after"),
    ),  # step 2, between its first and second update
    "in-loop evaluation": ("run_eval", (2, "before")),  # the evaluation after step 2
    "final evaluation": ("run_eval", (3, "before")),  # the last evaluation (outside the steps)
    "inside a save": ("save_checkpoint", (1, "before")),  # the checkpoint of step 2, being written
}


@pytest.mark.parametrize("where", list(INTERRUPTS))
def test_an_interrupt_anywhere_resumes_to_the_uninterrupted_run(
    where, straight_run, tmp_path, monkeypatch
):
    name, calls = INTERRUPTS[where]
    owner = {"save_checkpoint": train.distributed, "generate": ppo, "ppo_update": ppo}.get(
        name, train
    )
    # SIGTERM is Ctrl-C too
    signum = signal.SIGTERM if where == "after the first update" else signal.SIGINT
    cfg = tiny_config(straight_run, "--run.name", f"cut_{where.replace(' ', '_')}")
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, signal_once(getattr(owner, name), list(calls), signum))
        with pytest.raises(KeyboardInterrupt):
            train.train(cfg, log=lambda *a: None)
    run_dir = os.path.join(cfg.run.out_dir, cfg.run.name)
    assert checkpoint.latest_checkpoint(run_dir)  # something was saved
    cfg.run.resume = True
    train.train(cfg, log=lambda *a: None)
    assert every_metric(run_dir) == every_metric(straight_run / "straight")
    expected = final_weights(straight_run / "straight")
    for key, value in final_weights(run_dir).items():
        assert torch.equal(value, expected[key]), key


def test_sigterm_stops_the_cli_after_the_step_with_a_checkpoint(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.join(REPO, "train.py"),
            "--config",
            TINY,
            "--run.out_dir",
            str(tmp_path),
            "--rl.steps",
            "200",
            "--run.checkpoint_every",
            "1000",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "tiny" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (
        not metrics.exists() or len(metrics.read_text().splitlines()) < 3
    ):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr
    saved = checkpoint.latest_checkpoint(tmp_path / "tiny")
    last_step = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert saved and saved.endswith(f"ckpt_{last_step}") and 2 <= last_step < 200


def test_a_corrupt_latest_checkpoint_falls_back_to_an_older_intact_one(straight_run, tmp_path):
    import shutil

    run_dir = tmp_path / "damaged"
    cfg = tiny_config(tmp_path, "--run.name", "damaged", "--run.keep_checkpoints", "5")
    train.train(cfg, log=lambda *a: None)
    pristine = tmp_path / "pristine"
    shutil.copytree(run_dir, pristine)
    for damage in ("truncated weights", "no trainer.pt", "garbage latest"):
        shutil.rmtree(run_dir)
        shutil.copytree(pristine, run_dir)
        if damage == "truncated weights":
            weights = run_dir / "ckpt_4" / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:1000])
        elif damage == "no trainer.pt":
            (run_dir / "ckpt_4" / "trainer.pt").unlink()
        else:
            (run_dir / "latest").write_bytes(b"\x00\xffckpt_")
        notes = []
        resumed = tiny_config(
            tmp_path, "--run.name", "damaged", "--run.keep_checkpoints", "5", "--resume"
        )
        train.train(resumed, log=notes.append)
        said = " ".join(map(str, notes))
        if (
            damage == "garbage latest"
        ):  # the newest intact checkpoint is still ckpt_4: the finished run stands
            assert "names no checkpoint" in said and "resumed from" in said and "ckpt_4" in said
        # ckpt_4 skipped, named; the run goes on from ckpt_2 and ends where the straight run did
        else:
            assert (
                "skipped" in said
                and "ckpt_4" in said
                and "resumed from" in said
                and "ckpt_2" in said
            )
        assert every_metric(run_dir) == every_metric(straight_run / "straight"), damage
    for path in run_dir.glob(
        "ckpt_*/trainer.pt"
    ):  # nothing intact: an error, never a silent fresh start
        path.unlink()
    with pytest.raises(checkpoint.RunError, match="no checkpoint in .* loads"):
        train.train(tiny_config(tmp_path, "--run.name", "damaged", "--resume"), log=lambda *a: None)


def test_a_resume_with_other_settings_says_which_keys_differ(straight_run, tmp_path):
    train.train(
        tiny_config(tmp_path, "--run.name", "changed", "--rl.steps", "2"), log=lambda *a: None
    )
    notes = []
    train.train(
        tiny_config(
            tmp_path, "--run.name", "changed", "--rl.steps", "4", "--rl.lr", "0.002", "--resume"
        ),
        log=notes.append,
    )
    said = " ".join(map(str, notes))
    assert (
        "settings differ" in said and "rl.steps 2 -> 4" in said and "rl.lr 0.001 -> 0.002" in said
    )
    saved = yaml.safe_load((tmp_path / "changed" / "config.yaml").read_text())
    assert saved["rl"]["steps"] == 4  # the resumed run's settings, once its checkpoint loaded


def test_a_resume_that_loads_no_checkpoint_keeps_the_runs_config_and_says_how_to_resume(tmp_path):
    """A resume with a model the checkpoints do not fit used to overwrite the run's config.yaml
    first, then advise moving the (intact) run away."""
    train.train(tiny_config(tmp_path, "--run.name", "r", "--rl.steps", "2"), log=lambda *a: None)
    config_yaml = tmp_path / "r" / "config.yaml"
    before = config_yaml.read_text()
    wider = tiny_config(tmp_path, "--run.name", "r", "--model.n_embd", "64", "--resume")
    with pytest.raises(checkpoint.RunError, match="resume with the run's own .--config .*r/config"):
        train.train(wider, log=lambda *a: None)
    assert config_yaml.read_text() == before
    again, _ = config.parse_args(["--config", str(config_yaml), "--resume"])
    assert train.train(again, log=lambda *a: None)  # the run's own settings resume it


def test_a_diverged_warm_start_is_not_cached_and_a_diverged_run_stops(tmp_path, monkeypatch):
    with pytest.raises(checkpoint.Diverged, match="warm start"):
        train.train(tiny_config(tmp_path, "--sft.lr", "1e30"), log=lambda *a: None)
    # nothing cached for later runs to reuse
    assert not list((tmp_path / "_warmstart").glob("*/ckpt_*"))
    monkeypatch.setitem(
        advantage.ESTIMATORS,
        "nan_test",
        lambda rewards, *, k: torch.full_like(rewards, float("nan")),
    )
    cfg = tiny_config(
        tmp_path,
        "--run.name",
        "nan",
        "--rl.advantage",
        "nan_test",
        "--rl.max_skipped_updates",
        "12",
        "--rl.steps",
        "6",
    )
    with pytest.raises(checkpoint.Diverged, match="12 updates in a row.*ckpt_2"):
        train.train(cfg, log=lambda *a: None)
    # the last good one, kept
    assert checkpoint.latest_checkpoint(tmp_path / "nan").endswith("ckpt_2")


@pytest.mark.parametrize(
    "pattern, longest",
    [(["xxx.", "xxxx"], 4), ([".xxx", "xx.."], 5)],  # x: an update skipped (non-finite loss)
)
def test_a_run_stops_when_exactly_max_skipped_updates_in_a_row_are_skipped(
    tmp_path, monkeypatch, pattern, longest
):
    """The run counts skipped updates in a row across steps, wherever in its step each one fell
    (it used to count a step's skips as if they were its last updates)."""

    def fake_step(step, *args, **kwargs):
        return {"train/loss": 0.0, "train/reward": 0.0,
                "skipped_each_update": [c == "x" for c in pattern[step]]}  # fmt: skip

    monkeypatch.setattr(train, "rl_step", fake_step)
    cfg = tiny_config(tmp_path, "--rl.steps", "2", "--rl.max_skipped_updates", "5")
    if longest < 5:
        train.train(cfg, log=lambda *a: None)
    else:
        with pytest.raises(checkpoint.Diverged, match="5 updates in a row.*step 2"):
            train.train(cfg, log=lambda *a: None)


# ----------------------------------------------------------------------------- issue 26 and 27: the
# step's own checks


def exactly_two_wrong(task_name, texts, golds, **options):
    """Each prompt's 8 responses: the first 2 wrong, the rest right. Pass@2 by bootstrap has a
    nonzero
    advantage only when one of its random groups of 2 is both wrong (1 in 28 a group): a coin
    toss."""
    return [0.0 if i % 8 < 2 else 1.0 for i in range(len(texts))]


def test_dynamic_sampling_trains_on_exactly_the_advantages_its_filter_kept(tmp_path, monkeypatch):
    """The filter and the step used to draw the bootstrap's groups from different generators, so
    kept prompts
    could be silent in the step (and rejected ones would have had signal)."""
    monkeypatch.setattr(ppo.reward, "score_batch", exactly_two_wrong)
    cfg = tiny_config(
        tmp_path,
        "--sft.steps",
        "0",
        "--rl.resample_rounds",
        "12",
        "--rl.advantage",
        "passk_bootstrap",
        "--rl.k",
        "2",
    )
    task = build.build_task(cfg)
    policy, tokenizer = build.build_policy(cfg, torch.device("cpu"))
    for step in range(3):
        metrics = train.rl_step(
            step,
            cfg,
            policy,
            None,
            optim.make_optimizer(policy, 1e-3, 0.0),
            task,
            tokenizer,
            torch.device("cpu"),
        )
        assert metrics["train/nonzero_advantage_prompts"] == cfg.rl.prompts_per_step, step
        assert metrics["train/zero_advantage_frac"] == 0.0, step
        assert metrics["train/reward"] == 0.75 and metrics["train/reward_sampled"] == 0.75


def test_entropy_adaptive_dynamic_sampling_keeps_prompts_with_signal_under_both_of_its_estimators(
    tmp_path, monkeypatch
):
    # one wrong of 8 (k = 2): Pass@1 has signal, Pass@2 does not; three wrong: both have
    monkeypatch.setattr(
        ppo.reward,
        "score_batch",
        lambda task_name, texts, golds, **options: [
            0.0 if i % 8 < (1 if zlib.crc32(gold.encode()) % 2 else 3) else 1.0
            for i, gold in enumerate(golds)
        ],
    )
    cfg = tiny_config(
        tmp_path,
        "--sft.steps",
        "0",
        "--rl.resample_rounds",
        "6",
        "--rl.advantage",
        "entropy_adaptive",
        "--rl.k",
        "2",
    )
    task = build.build_task(cfg)
    policy, tokenizer = build.build_policy(cfg, torch.device("cpu"))
    metrics = train.rl_step(
        0,
        cfg,
        policy,
        None,
        optim.make_optimizer(policy, 1e-3, 0.0),
        task,
        tokenizer,
        torch.device("cpu"),
    )
    assert metrics["train/zero_advantage_frac"] == 0.0
    assert metrics["train/reward"] == 5 / 8  # only the three-wrong prompts were kept


def test_non_finite_weights_stop_the_run_naming_the_last_good_checkpoint(tmp_path, monkeypatch):
    """A non-finite update used to reach the sampler, which drew ids outside the vocabulary (a
    traceback)."""
    real_epochs = ppo.ppo_epochs

    def poisoned(cfg, step, policy, *args):
        stats = real_epochs(cfg, step, policy, *args)
        if step == 2:
            with torch.no_grad():
                next(policy.parameters()).fill_(float("nan"))
        return stats

    monkeypatch.setattr(ppo, "ppo_epochs", poisoned)
    with pytest.raises(checkpoint.Diverged, match="no longer finite after step 3.*ckpt_2"):
        train.train(tiny_config(tmp_path, "--eval.every", "0"), log=lambda *a: None)


def test_a_far_too_large_learning_rate_is_warned_of(tmp_path, monkeypatch):
    monkeypatch.setattr(ppo.reward, "score_batch", half_silent_rewards)  # a gradient to follow
    notes = []
    train.train(
        tiny_config(tmp_path, "--rl.lr", "1e6", "--rl.steps", "2", "--eval.every", "0"),
        log=notes.append,
    )
    assert any("far out of range (lower rl.lr)" in str(note) for note in notes)
    rows = [
        row for row in train_lines(tmp_path / "tiny").values() if "train/weight_norm_change" in row
    ]
    assert rows and max(row["train/weight_norm_change"] for row in rows) > 0.5
    quiet = []
    train.train(
        tiny_config(tmp_path, "--run.name", "quiet", "--rl.steps", "2", "--eval.every", "0"),
        log=quiet.append,
    )
    assert not any("far out of range" in str(note) for note in quiet)


def test_the_progress_bar_of_a_resumed_run_counts_from_where_it_stands(tmp_path):
    cfg = tiny_config(tmp_path, "--run.progress", "true")
    bar = train.progress_bar(cfg, 3)
    assert (bar.n, bar.total) == (3, cfg.rl.steps)
    bar.close()


def test_a_signal_outside_the_rl_steps_says_what_happened_and_what_resume_does(
    tmp_path, monkeypatch, capsys
):
    real_eval = train.run_eval
    calls = []

    def final_eval_interrupted(cfg, run):
        calls.append(1)
        if len(calls) == 3:  # before RL, after step 2, then the final evaluation
            raise KeyboardInterrupt
        return real_eval(cfg, run)

    monkeypatch.setattr(train, "run_eval", final_eval_interrupted)
    with pytest.raises(SystemExit) as stop:
        train.main(["--config", TINY, "--run.out_dir", str(tmp_path)])
    assert stop.value.code == 130
    assert "stopped by SIGINT outside an RL step" in capsys.readouterr().err
    # the weights were saved
    assert checkpoint.latest_checkpoint(str(tmp_path / "tiny")).endswith("ckpt_4")
