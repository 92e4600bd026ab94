"""Stage 1, the warm start: supervised training on the task's demonstrations (BFS paths for mazes),
cached.

RL from a random tiny GPT would never see a reward; a short warm start that imitates correct
demonstrations gives it a policy that solves some mazes some of the time, which is where RL learns.
The result is cached under a key of its own config (model, task, sft, run seed) in runs/_warmstart/,
so later runs (other advantages, other seeds) reuse it; train.py skips it when `model.init` names a
checkpoint. A cache that cannot be written (a read-only runs/_warmstart) is skipped with a note: the
warm start is then trained by every run. The optimizer and the lr schedule are optim.py's. Left out:
a validation split and early stopping (the demonstrations are exact), mixed precision."""

import dataclasses
import hashlib
import json
import math
import os
import signal
import time

import torch

import distributed
from checkpoint import Diverged, GracefulStop, Stopped, latest_checkpoint, save_checkpoint
from config import Config, ConfigError, ModelConfig
from optim import make_optimizer, scheduled_lr
from rollout import right_pad, sequences_batch


def warm_start_dir(cfg: Config) -> str:
    """runs/_warmstart/<key>/, the key a hash of the model, task and sft sections and the seed.
    Model fields added after the cache existed (LoRA's) are left out at their defaults: earlier warm
    starts keep their keys."""
    model = {
        name: value
        for name, value in dataclasses.asdict(cfg.model).items()
        if not name.startswith(("lora_", "base_dtype")) or value != getattr(ModelConfig(), name)
    }
    key_source = json.dumps(
        {
            "model": model,
            "task": dataclasses.asdict(cfg.task),
            "sft": dataclasses.asdict(cfg.sft),
            "seed": cfg.run.seed,
        },
        sort_keys=True,
    )
    return os.path.join(
        cfg.run.out_dir, "_warmstart", hashlib.sha1(key_source.encode()).hexdigest()[:12]
    )


def warm_start(cfg: Config, policy, tokenizer, task, device, log=print):
    """Supervised training on demonstrations, cached in warm_start_dir(cfg); returns the cached
    checkpoint, or None when the cache could not be written (the policy holds the trained weights
    either way). A signal stops it after the step in progress (the last one included), cached."""
    cache_dir = warm_start_dir(cfg)
    checkpoint = latest_checkpoint(cache_dir)
    optimizer = make_optimizer(policy, cfg.sft.lr, cfg.sft.weight_decay)
    start = 0
    if checkpoint:
        policy.load_weights(checkpoint)
        state = torch.load(os.path.join(checkpoint, "trainer.pt"), weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        how = "reusing" if start >= cfg.sft.steps else "resuming"
        log(f"warm start: {how} {checkpoint} (step {start})")
    if start >= cfg.sft.steps:
        return checkpoint
    policy.train()
    # sft.buckets chunks the rows; rl.length_buckets is for RL's groups (and not in the cache key)
    policy.length_buckets, rl_buckets = 1, getattr(policy, "length_buckets", 1)
    try:
        return train_demonstrations(cfg, policy, optimizer, tokenizer, task, device, start, log)
    finally:
        policy.length_buckets = rl_buckets


def train_demonstrations(cfg: Config, policy, optimizer, tokenizer, task, device, start, log):
    """The warm start's steps from `start` to sft.steps; -> the cached checkpoint (or None)."""
    cache_dir = warm_start_dir(cfg)
    loss_avg, t0 = None, time.time()
    with GracefulStop(log) as stop, stop.deferred():
        for step in range(start, cfg.sft.steps):
            for group in optimizer.param_groups:
                sft = cfg.sft
                group["lr"] = scheduled_lr(sft.lr, step, sft.warmup, sft.steps, cosine=True)
            loss = demonstration_step(policy, optimizer, task, step, tokenizer, cfg, device)
            if not math.isfinite(loss):
                raise Diverged(
                    f"the warm start's loss is {loss} at step {step + 1}: not cached (lower sft.lr)"
                )
            loss_avg = loss if loss_avg is None else 0.95 * loss_avg + 0.05 * loss
            if (step + 1) % 100 == 0 or step + 1 == cfg.sft.steps:
                log(
                    f"warm start step {step + 1}/{cfg.sft.steps}: loss {loss_avg:.4f} "
                    f"({time.time() - t0:.0f}s)"
                )
            if distributed.any_rank(stop.requested is not None):  # the last step's signal too
                saved = save_warm_start(cfg, cache_dir, policy, optimizer, step + 1, log)
                then = "resumes" if step + 1 < cfg.sft.steps else "reuses"
                log(
                    f"stopped the warm start after step {step + 1}, "
                    f"{'cached: the next run ' + then + ' it' if saved else 'not cached'}"
                )
                raise Stopped(stop.requested or signal.SIGINT)
    return save_warm_start(cfg, cache_dir, policy, optimizer, cfg.sft.steps, log)


def save_warm_start(cfg: Config, cache_dir, policy, optimizer, step: int, log):
    """Cache the warm start at `step` (rank 0 writes it; under torchrun every rank trains the same
    one). Non-finite weights are never cached; a cache that cannot be written (read-only, forbidden)
    is skipped with a note, and None returned."""
    if not all(torch.isfinite(p).all() for p in policy.parameters()):
        raise Diverged(
            f"the warm start's weights are no longer finite at step {step}: not cached (lower "
            "sft.lr)"
        )
    if not distributed.is_main():
        return None
    state = {"step": step, "optimizer": optimizer.state_dict()}
    try:
        return save_checkpoint(cache_dir, step, policy, state, dataclasses.asdict(cfg))
    except OSError as err:
        log(
            f"warm start: cannot cache it in {cache_dir} ({err.strerror or err}): trained without "
            "a cache, so the next run trains it again"
        )
        return None


def demonstration_step(policy, optimizer, task, step: int, tokenizer, cfg: Config, device):
    """sft_step on the warm start's batch at `step`; a demonstration longer than the model (one
    check_demonstration_lengths did not see) is a one-line ConfigError, not a traceback."""
    try:
        return sft_step(policy, optimizer, demonstrations(task, step, cfg), tokenizer, cfg, device)
    except ValueError as err:
        if "longer than model.block_size" not in str(err):
            raise
        raise ConfigError(
            f"warm start step {step + 1}: a prompt with its demonstration is a {err}; raise "
            "model.block_size, or use smaller problems"
        ) from None


def demonstrations(task, step: int, cfg: Config) -> list:
    """The warm start's batch at `step`; a task without demonstrations (math from files) is a
    ConfigError."""
    problems = task.train_batch("sft", step, cfg.sft.batch_size)
    missing = next((p for p in problems if not isinstance(p.demo, str)), None)
    if missing is not None:
        raise ConfigError(no_demonstration_message(cfg, task, missing.origin))
    return problems


def no_demonstration_message(cfg: Config, task, where: str) -> str:
    return (
        f"sft.steps={cfg.sft.steps}: the {task.name} task has no demonstrations to warm-start on"
        f"{f' ({where})' if where else ''}; set --sft.steps 0, or --model.init to a checkpoint"
    )


def check_demonstration_lengths(cfg: Config, task, tokenizer, context: int):
    """Refuse, naming the problem (file and line, or which one), a demonstration that does not fit
    the model's `context` positions beside its prompt, or a warm start on a task without
    demonstrations. Checks the held-out problems, a data file's training problems and the warm
    start's first batch (a maze's demonstration length follows its size, which these cover); nothing
    when the warm start is skipped."""
    if cfg.sft.steps <= 0 or cfg.model.init:
        return
    groups = (
        ("held-out", task.heldout),
        ("training", getattr(task, "train", [])),
        ("warm-start", task.train_batch("sft", 0, cfg.sft.batch_size)),
    )
    for kind, problems in groups:
        for index, problem in enumerate(problems):
            where = problem.origin or f"{kind} {task.name} problem {index}"
            if not isinstance(problem.demo, str):
                raise ConfigError(no_demonstration_message(cfg, task, where))
            # + EOS
            length = (
                len(tokenizer.encode_prompt(problem.prompt))
                + len(tokenizer.encode(problem.demo))
                + 1
            )
            if length > context:
                raise ConfigError(
                    f"{where}: the prompt and its demonstration are {length} tokens, more than the "
                    f"model's {context} positions (model.block_size); raise it, or use smaller "
                    f"problems"
                )


def sft_step(policy, optimizer, problems, tokenizer, cfg: Config, device) -> float:
    """One supervised step: token-mean negative log-likelihood of the demonstrations.

    Rows are sorted by prompt length and run in `sft.buckets` chunks (gradients accumulate), so
    little compute goes to padding when prompt lengths vary (maze sizes do).
    """
    problems = sorted(problems, key=lambda p: len(p.prompt))
    prompts = [tokenizer.encode_prompt(p.prompt) for p in problems]
    demos = [tokenizer.encode(p.demo) + [tokenizer.eos_ids[0]] for p in problems]
    total_tokens = sum(len(d) for d in demos)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    chunk = math.ceil(len(problems) / cfg.sft.buckets)
    for start in range(0, len(problems), chunk):
        responses, response_mask = right_pad(demos[start : start + chunk], tokenizer.pad_id, device)
        input_ids, attention_mask = sequences_batch(
            prompts[start : start + chunk], responses, response_mask, tokenizer.pad_id
        )
        logp, _ = policy(
            input_ids,
            attention_mask,
            response_mask,
            valid_vocab=tokenizer.vocab_size,
            fused=cfg.rl.logprob == "fused",
        )
        loss = -(logp * response_mask).sum() / total_tokens
        loss.backward()
        loss_sum += loss.item()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    # a non-finite loss stops the warm start (the caller): never step on it
    if math.isfinite(loss_sum):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum
