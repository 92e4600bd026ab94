"""Stage 1, the warm start: supervised training on the task's demonstrations (BFS paths for mazes), cached.

RL from a random tiny GPT would never see a reward; a short warm start that imitates correct
demonstrations gives it a policy that solves some mazes some of the time, which is where RL learns.
The result is cached under a key of its own config (model, task, sft, run seed) in runs/_warmstart/,
so later runs (other advantages, other seeds) reuse it; train.py skips it when `model.init` names a
checkpoint. Also here: the learning-rate schedule and the optimizer, which the RL stage uses too.
Left out: a validation split and early stopping (the demonstrations are exact), mixed precision.
"""
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
from config import Config, ModelConfig
from rollout import right_pad, sequences_batch


def warm_start_dir(cfg: Config) -> str:
    """runs/_warmstart/<key>/, the key a hash of the model, task and sft sections and the seed. Model fields
    added after the cache existed (LoRA's) are left out at their defaults: earlier warm starts keep their keys."""
    model = {name: value for name, value in dataclasses.asdict(cfg.model).items()
             if not name.startswith(("lora_", "base_dtype")) or value != getattr(ModelConfig(), name)}
    key_source = json.dumps({"model": model, "task": dataclasses.asdict(cfg.task),
                             "sft": dataclasses.asdict(cfg.sft), "seed": cfg.run.seed}, sort_keys=True)
    return os.path.join(cfg.run.out_dir, "_warmstart", hashlib.sha1(key_source.encode()).hexdigest()[:12])


def warm_start(cfg: Config, policy, tokenizer, task, device, log=print):
    """Supervised training on demonstrations, cached in warm_start_dir(cfg)."""
    cache_dir = warm_start_dir(cfg)
    checkpoint = latest_checkpoint(cache_dir)
    optimizer = make_optimizer(policy, cfg.sft.lr, cfg.sft.weight_decay)
    start = 0
    if checkpoint:
        policy.load_weights(checkpoint)
        state = torch.load(os.path.join(checkpoint, "trainer.pt"), weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        log(f"warm start: {'reusing' if start >= cfg.sft.steps else 'resuming'} {checkpoint} (step {start})")

    def save(step):  # under torchrun every rank trains the same warm start; rank 0 writes it
        if not all(torch.isfinite(p).all() for p in policy.parameters()):
            raise Diverged(f"the warm start's weights are no longer finite at step {step}: not cached (lower sft.lr)")
        if not distributed.is_main():
            return None
        return save_checkpoint(cache_dir, step, policy, {"step": step, "optimizer": optimizer.state_dict()},
                               dataclasses.asdict(cfg))

    if start >= cfg.sft.steps:
        return checkpoint
    policy.train()
    loss_avg, t0 = None, time.time()
    with GracefulStop(log) as stop, stop.deferred():  # a signal stops it after the step in progress, cached
        for step in range(start, cfg.sft.steps):
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(cfg.sft.lr, step, cfg.sft.warmup, cfg.sft.steps, cosine=True)
            loss = sft_step(policy, optimizer, task.train_batch("sft", step, cfg.sft.batch_size), tokenizer, cfg,
                            device)
            if not math.isfinite(loss):
                raise Diverged(f"the warm start's loss is {loss} at step {step + 1}: not cached (lower sft.lr)")
            loss_avg = loss if loss_avg is None else 0.95 * loss_avg + 0.05 * loss
            if (step + 1) % 100 == 0 or step + 1 == cfg.sft.steps:
                log(f"warm start step {step + 1}/{cfg.sft.steps}: loss {loss_avg:.4f} ({time.time() - t0:.0f}s)")
            if distributed.any_rank(stop.requested is not None) and step + 1 < cfg.sft.steps:
                save(step + 1)
                log(f"stopped the warm start after step {step + 1}, cached: the next run resumes it")
                raise Stopped(stop.requested or signal.SIGINT)
    return save(cfg.sft.steps)


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
        responses, response_mask = right_pad(demos[start:start + chunk], tokenizer.pad_id, device)
        input_ids, attention_mask = sequences_batch(prompts[start:start + chunk], responses, response_mask,
                                                    tokenizer.pad_id)
        logp, _ = policy(input_ids, attention_mask, response_mask, valid_vocab=tokenizer.vocab_size,
                         fused=cfg.rl.logprob == "fused")
        loss = -(logp * response_mask).sum() / total_tokens
        loss.backward()
        loss_sum += loss.item()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    if math.isfinite(loss_sum):  # a non-finite loss stops the warm start (the caller): never step on it
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum


def scheduled_lr(peak: float, step: int, warmup: int, steps: int, cosine: bool) -> float:
    """Linear warmup to `peak`, then `peak` (constant) or a cosine decay to 10 % of it at `steps`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if not cosine:
        return peak
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(policy, lr, weight_decay, beta2=0.95):
    trainable = [p for p in policy.parameters() if p.requires_grad]  # LoRA: the adapters; AdamW state for them alone
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay, betas=(0.9, beta2))
