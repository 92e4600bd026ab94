"""Train a policy with RL from verifiable rewards: warm start, then PPO/GRPO with Pass@k advantages.

    python train.py --config configs/maze.yaml               # the maze demo (CPU, minutes)
    python train.py --config configs/maze.yaml --rl.k 8      # any field can be overridden
    python train.py --config configs/maze.yaml --resume      # continue from runs/<name>/latest
    python train.py --help                                   # every field with its meaning
    torchrun --nproc_per_node=8 train.py --config ...        # data parallel: DDP, or FSDP2 for model.hf

Stage 1, warm start (warm_start.py): supervised training on the task's demonstrations (BFS
paths for mazes), cached under a key of its own config in runs/_warmstart/, so that later runs
(other advantages, other seeds) reuse it; skipped when `model.init` names a checkpoint.

Stage 2, RL. One step, as docs/design.md draws it:
  1. sample B prompts, N responses each (rollout.py: KV cache, seed per prompt)
  2. score them (reward.py) -> rewards [B, N]
  3. recompute old log-probs and per-token entropy with the training path, no grad
  4. advantages from the active phase's estimator (advantage.py) -> [B, N]
  5. epochs x mini-batches of PPO-clip updates (clip-higher), token-mean loss,
     optional k3 KL to a frozen reference, gradient clipping, AdamW; prompts whose
     advantages are all 0 skip the forward/backward (same gradient: rl.skip_zero_advantage)
What it keeps from DAPO (the paper's recipe): clip-higher and token-level loss. Off by default:
the KL term, dynamic sampling (rl.resample_rounds), truncated importance sampling (rl.tis_cap),
dual-clip (rl.dual_clip). Left out: the entropy bonus, value functions.

A run writes runs/<name>/: config.yaml, metrics.jsonl, ckpt_<step>/ (atomic), latest,
curves.png and passk.png. Ctrl-C, SIGTERM and SIGHUP finish the step in progress, save it and
stop; --resume then continues exactly as the uninterrupted run would have (checkpoint.py). The
config and the builders of the task and the policy are config.py's.

Under torchrun (distributed.py) the batch stays global: rank r samples a contiguous share of the
B prompts, all N responses of a prompt on one rank, with the prompt's global seed; rewards and
per-prompt entropies are gathered so every rank computes the estimator on the whole batch; loss
denominators are global token (or row) counts; so the update equals a single process's at any
number of ranks. Every rank runs the same warm start (rank 0 writes its cache; the wrapper then
gives every rank rank 0's weights). Rank 0 alone logs, plots and prints; after each step the ranks
agree whether any was asked to stop, so they all save the same step.
"""
import dataclasses
import inspect
import math
import os
import random
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from typing import NamedTuple

import torch

import advantage
import distributed
import eval as evaluation
import reward
from checkpoint import (Diverged, GracefulStop, MetricsLog, RunError, Stopped, latest_checkpoint, load_newest_intact,
                        prepare_run_dir, record_evals, resolve_checkpoint, resume_candidates, rng_state,
                        set_rng_state)
from config import (Config, ConfigError, active_phase, build_policy, build_task, check_prompt_lengths, parse_args,
                    pick_device, reward_options)
from rollout import Rollout, combine_seeds, concat_rollouts, generate, micro_slices, sequences_batch
from warm_start import make_optimizer, scheduled_lr, warm_start


# ----------------------------------------------------------------------------- stage 2: one RL step

@dataclass
class StepBatch:
    """This rank's rows of one RL step, b prompts x N responses grouped by prompt: what the PPO update reads."""
    input_ids: torch.Tensor       # [b*N, P+L] the left-padded prompt, then the response
    attention_mask: torch.Tensor  # [b*N, P+L]
    response_mask: torch.Tensor   # [b*N, L] 1 on response tokens, EOS included
    loss_mask: torch.Tensor       # [b*N, L] the tokens the loss counts (rl.mask_truncated drops rows without EOS)
    old_logp: torch.Tensor        # [b*N, L] log-probs before the update: the PPO ratio's denominator
    sampler_logp: torch.Tensor    # [b*N, L] the sampler's, tempered, before top-k/top-p (rl.tis_cap weighs by the gap)
    ref_logp: torch.Tensor        # [b*N, L] the frozen reference's, or None without a KL term
    advantages: torch.Tensor      # [b*N, 1] each response's advantage, broadcast over its tokens
    silent: torch.Tensor          # [b*N] bool: the row's prompt has N zero advantages (no gradient signal)
    skip_silent: bool             # silent rows skip the update's forward and backward
    valid_vocab: int              # ids the tokenizer can decode; the log-probs mask the rest


def rl_step(step, cfg: Config, policy, reference, optimizer, task, tokenizer, device) -> dict:
    """One RL step, numbered as in the docstring above, on this rank's share of the batch; returns its metrics."""
    rl, B, N = cfg.rl, cfg.rl.prompts_per_step, cfg.rl.responses_per_prompt
    b = B // distributed.world_size()  # this rank's prompts: b = B in one process
    first = distributed.rank() * b     # the global index of its first prompt
    phase = active_phase(cfg, step)
    estimator = advantage.ESTIMATORS[phase["advantage"]]
    t0, timeouts_before = time.time(), reward.verifier_stats().get("timeouts", 0)

    # 1-2. sample b prompts x N responses and score them; the randomness of prompt i comes from (run seed, step, i),
    #      i global. Each run seed has its own prompt stream.
    problems = task.train_batch(f"rl{cfg.run.seed}", step, B)[first:first + b]
    seeds = [combine_seeds(cfg.run.seed, step, first + i) for i in range(b)]
    policy.eval()
    sampled, resampled = sample_and_score(cfg, policy, task, tokenizer, problems, seeds, device), 0
    if rl.resample_rounds:  # dynamic sampling (DAPO): train only on prompts that carry signal
        sampled, resampled = refill_with_signal(step, cfg, policy, task, tokenizer, device, sampled, estimator, phase)
        B = b = len(sampled.prompts)  # one process (train.py refuses it under torchrun)
    prompts, rollout, texts, rewards = sampled.prompts, sampled.rollout, sampled.texts, sampled.rewards  # [b, N]
    t_rollout = time.time() - t0

    # 3. old log-probs and entropy with the training path (never the sampler's: docs/design.md, Contracts)
    row_prompts = [p for p in prompts for _ in range(N)]
    input_ids, attention_mask = sequences_batch(row_prompts, rollout.tokens, rollout.response_mask, tokenizer.pad_id)
    response_mask = rollout.response_mask  # [b*N, L]
    with torch.no_grad():
        old_logp, entropy = no_grad_logprobs(policy, input_ids, attention_mask, response_mask, cfg,
                                             tokenizer.vocab_size, N, return_entropy=True)
        ref_logp = no_grad_logprobs(reference, input_ids, attention_mask, response_mask, cfg, tokenizer.vocab_size,
                                    N)[0] if reference is not None else None
    prompt_entropy = mean_entropy(entropy, response_mask, N, rl.entropy_mean)  # [b]

    # 4. advantages [B, N] from the active phase's estimator, on the whole batch on every rank
    #    (entropy_adaptive ranks all B prompts; the bootstrap's generator is the same everywhere)
    all_rewards = distributed.all_gather_rows(rewards)  # [B, N]
    all_prompt_entropy = distributed.all_gather_rows(prompt_entropy)  # [B]
    generator = torch.Generator(device=device).manual_seed(combine_seeds(cfg.run.seed, step, 0xAD))
    advantages = estimator(all_rewards, k=phase["k"],
                           **estimator_extras(estimator, rl, all_prompt_entropy, generator))  # [B, N]
    # a prompt whose N advantages are all 0 (every response right, or every one wrong) is silent: it adds nothing
    # to the PPO gradient. With no KL term its rows skip the update's forward and backward (the loss keeps its
    # denominators, so the gradient is the same). Under torchrun every rank runs all its rows (same collectives).
    silent_prompts = (advantages == 0).all(1)  # [B]
    batch = StepBatch(
        input_ids, attention_mask, response_mask,
        loss_mask=response_mask * (~rollout.truncated).float()[:, None] if rl.mask_truncated else response_mask,
        old_logp=old_logp, sampler_logp=rollout.sampler_logprobs, ref_logp=ref_logp,
        advantages=advantages[first:first + b].reshape(b * N, 1).float(),  # this rank's, broadcast over tokens
        silent=silent_prompts[first:first + b].to(device).repeat_interleave(N),
        skip_silent=rl.skip_zero_advantage and rl.kl_coef == 0 and distributed.world_size() == 1,
        valid_vocab=tokenizer.vocab_size)

    # 5. PPO updates: each mini-batch takes an equal random share of every prompt's responses
    policy.train()
    order = torch.Generator().manual_seed(combine_seeds(cfg.run.seed, step, 0x5EED))
    stats = {"clip_frac": [], "approx_kl": [], "grad_norm": [], "loss": [], "kl": [], "dual_clip_frac": [],
             "tis_capped_frac": []}
    skipped = 0
    for epoch in range(rl.epochs):
        shares = torch.stack([torch.randperm(N, generator=order) for _ in range(B)])[first:first + b]  # [b, N]
        for m in range(rl.minibatches):
            picked = shares[:, m * N // rl.minibatches:(m + 1) * N // rl.minibatches]  # [b, N/M]
            rows = (torch.arange(b)[:, None] * N + picked).flatten().to(device)
            optimizer.zero_grad(set_to_none=True)
            loss, grad_norm, minibatch_stats = ppo_update(cfg, policy, batch, rows)
            if math.isfinite(loss) and math.isfinite(grad_norm):
                optimizer.step()
            else:
                skipped += 1  # a non-finite loss or gradient skips the update; the run goes on
            for name, value in minibatch_stats.items():
                stats[name].append(value)
            stats["loss"].append(loss)
            stats["grad_norm"].append(grad_norm)
    optimizer.zero_grad(set_to_none=True)  # the next step's rollout need not hold them (bench/memory.py)

    # sums over every rank's responses: tokens, entropy, truncated rows, sampler gap, verifier timeouts
    tokens, entropy_sum, truncated, logp_gap, timeouts = distributed.all_reduce_sum(torch.stack([
        response_mask.sum(), (entropy * response_mask).sum(), rollout.truncated.float().sum(),
        ((rollout.sampler_logprobs - old_logp).abs() * response_mask).sum(),
        torch.tensor(float(reward.verifier_stats().get("timeouts", 0) - timeouts_before), device=device)]))
    mean = lambda values: sum(values) / len(values) if values else float("nan")
    updated = (~silent_prompts[first:first + b].cpu()) if batch.skip_silent else torch.ones(b, dtype=torch.bool)
    return {
        "train/reward": all_rewards.mean().item(),
        "train/solved_any": (all_rewards.max(1).values > 0).float().mean().item(),
        **diversity_metrics(texts, rewards),
        "train/entropy": (entropy_sum / tokens).item(),
        "train/loss": mean(stats["loss"]),
        "train/clip_frac": mean(stats["clip_frac"]),
        **({"train/dual_clip_frac": mean(stats["dual_clip_frac"])} if rl.dual_clip else {}),
        **({"train/tis_capped_frac": mean(stats["tis_capped_frac"])} if rl.tis_cap else {}),
        **({"train/resampled_prompts": resampled, "train/signal_prompts": int((~silent_prompts).sum())}
           if rl.resample_rounds else {}),
        "train/approx_kl": mean(stats["approx_kl"]),
        "train/kl_ref": mean(stats["kl"]),
        "train/grad_norm": mean(stats["grad_norm"]),
        "train/skipped_updates": skipped,
        "train/zero_adv_frac": silent_prompts.float().mean().item(),
        "train/updated_rows_frac": updated.float().mean().item(),
        "train/adv_abs": advantages.abs().mean().item(),
        "train/resp_len": (tokens / all_rewards.numel()).item(),
        "train/truncated_frac": (truncated / all_rewards.numel()).item(),
        "train/sampler_logp_gap": logp_gap.item() / tokens.item(),
        "train/lr": optimizer.param_groups[0]["lr"],
        "train/advantage": phase["advantage"],
        "train/k": phase["k"],
        "train/verifier_timeouts": int(timeouts.item()),
        "time/rollout_s": t_rollout,
        "time/step_s": time.time() - t0,
    }


class Sampled(NamedTuple):
    """Prompts with their N responses each, decoded and scored (steps 1-2 of a step)."""
    problems: list
    prompts: list                 # token ids of each prompt
    rollout: Rollout              # [p*N, L] tensors, rows grouped by prompt
    texts: list                   # p*N decoded responses
    rewards: torch.Tensor         # [p, N]


def sample_and_score(cfg: Config, policy, task, tokenizer, problems, seeds, device) -> Sampled:
    """Steps 1-2 for the given problems: N responses per prompt, one seed per prompt, and their rewards."""
    rl, N = cfg.rl, cfg.rl.responses_per_prompt
    prompts = [tokenizer.encode_prompt(p.prompt) for p in problems]
    chunk = rl.rollout_prompts or len(prompts)  # prompts per generate call: bounds the KV cache (p*N rows at once)
    with distributed.full_weights(policy) as sampler:
        rollout = concat_rollouts([
            generate(sampler, prompts[i:i + chunk], n=N, max_new_tokens=cfg.task.max_new_tokens,
                     eos_ids=tokenizer.eos_ids, pad_id=tokenizer.pad_id, valid_vocab=tokenizer.vocab_size,
                     temperature=rl.temperature, top_p=rl.top_p, top_k=rl.top_k, seeds=seeds[i:i + chunk])
            for i in range(0, len(prompts), chunk)], tokenizer.pad_id)
    texts = [tokenizer.decode(row) for row in rollout.tokens.tolist()]
    golds = [p.gold for p in problems for _ in range(N)]
    rewards = torch.tensor(reward.score_batch(task.name, texts, golds, **reward_options(cfg)),
                           dtype=torch.float32, device=device).view(len(prompts), N)
    return Sampled(problems, prompts, rollout, texts, rewards)


def refill_with_signal(step, cfg: Config, policy, task, tokenizer, device, sampled: Sampled, estimator,
                       phase) -> tuple[Sampled, int]:
    """DAPO's dynamic sampling: keep the prompts whose advantages are not all 0 and refill the batch from the
    step's own refill stream (global indices, seeds keyed by run seed, step and index: a resumed run draws the
    same), at most rl.resample_rounds rounds of B prompts. Returns the batch to train on (up to B prompts, fewer
    when the bound is hit; the first round as it is when no prompt carries signal) and the prompts sampled beyond
    the first B."""
    rl, B, N = cfg.rl, cfg.rl.prompts_per_step, cfg.rl.responses_per_prompt
    kept, resampled = take_prompts(sampled, carries_signal(estimator, sampled.rewards, phase["k"], rl), N), 0
    for round_ in range(1, rl.resample_rounds + 1):
        if len(kept.prompts) >= B:
            break
        problems = task.train_batch(f"rl{cfg.run.seed}/refill{step}", round_ - 1, B)
        seeds = [combine_seeds(cfg.run.seed, step, round_ * B + i) for i in range(B)]
        more = sample_and_score(cfg, policy, task, tokenizer, problems, seeds, device)
        resampled += B
        more = take_prompts(more, carries_signal(estimator, more.rewards, phase["k"], rl), N)
        kept = Sampled(kept.problems + more.problems, kept.prompts + more.prompts,
                       concat_rollouts([kept.rollout, more.rollout], tokenizer.pad_id), kept.texts + more.texts,
                       torch.cat([kept.rewards, more.rewards]))
    if not kept.prompts:
        return sampled, resampled
    return take_prompts(kept, torch.arange(len(kept.prompts)) < B, N), resampled


def carries_signal(estimator, rewards, k, rl) -> torch.Tensor:
    """[p] bool: the prompts whose advantages under `estimator` are not all 0. entropy_adaptive gives a prompt
    Pass@1 or Pass@k by its rank in the final batch, so a prompt counts when its Pass@1 advantages (rewards not all
    equal) are nonzero; the bootstrap draws its groups with a generator of its own here."""
    if estimator is advantage.entropy_adaptive:
        estimator = advantage.grpo
    generator = torch.Generator(device=rewards.device).manual_seed(0x51)
    advantages = estimator(rewards, k=k, **estimator_extras(estimator, rl, None, generator))
    return (advantages != 0).any(1).cpu()


def take_prompts(sampled: Sampled, chosen, N) -> Sampled:
    """The chosen prompts (a [p] bool mask) of a Sampled, with their N rows each."""
    index = chosen.nonzero().flatten().tolist()
    rows = torch.tensor([i * N + j for i in index for j in range(N)], dtype=torch.long)
    pick = lambda t: t[rows.to(t.device)] if t is not None else None
    return Sampled([sampled.problems[i] for i in index], [sampled.prompts[i] for i in index],
                   Rollout(**{f.name: pick(getattr(sampled.rollout, f.name)) for f in dataclasses.fields(Rollout)}),
                   [sampled.texts[row] for row in rows.tolist()],
                   sampled.rewards[torch.tensor(index, dtype=torch.long)])


def logprobs(policy, input_ids, attention_mask, response_mask, cfg: Config, valid_vocab, group_size,
             return_entropy=False):
    """The training path's per-token log-probs [R, L] (and entropy) of the responses: old, reference and new."""
    return policy(input_ids, attention_mask, response_mask, temperature=cfg.rl.temperature, valid_vocab=valid_vocab,
                  return_entropy=return_entropy, fused=cfg.rl.logprob == "fused", group_size=group_size)


def no_grad_logprobs(policy, input_ids, attention_mask, response_mask, cfg: Config, valid_vocab, group_size,
                     return_entropy=False):
    """logprobs of every row (old or reference), in micro-batches of whole groups (call under no_grad)."""
    parts = [logprobs(policy, input_ids[s], attention_mask[s], response_mask[s], cfg, valid_vocab, group_size,
                      return_entropy)
             for s in micro_slices(input_ids.shape[0], group_size, cfg.rl.micro_batch)]
    logp = torch.cat([p[0] for p in parts])
    return logp, (torch.cat([p[1] for p in parts]) if return_entropy else None)


def mean_entropy(entropy, response_mask, N, how="token"):
    """Each prompt's mean entropy [b] from per-token entropies [b*N, L]: over all its response tokens (token), or
    each response's token mean, then the mean over its N responses (response). entropy_adaptive ranks by it."""
    L = entropy.shape[1]
    weighted, mask = (entropy * response_mask).view(-1, N, L), response_mask.view(-1, N, L)  # [b, N, L]
    if how == "token":
        return weighted.sum((1, 2)) / mask.sum((1, 2))
    return (weighted.sum(-1) / mask.sum(-1)).mean(1)


def estimator_extras(estimator, rl, prompt_entropy, generator) -> dict:
    """The optional arguments an estimator declares, from this step and the rl config section."""
    available = {"prompt_entropy": prompt_entropy, "generator": generator, "n_groups": rl.n_groups or None,
                 "beta": rl.rs_beta, "normalize_std": rl.best_of_n_std}
    parameters = inspect.signature(estimator).parameters
    return {name: value for name, value in available.items() if name in parameters}


def diversity_metrics(texts: list[str], rewards) -> dict:
    """Exploration, as the paper measures it: distinct answers among wrong responses, and prompts whose N agree."""
    B, N = rewards.shape
    groups = [texts[b * N:(b + 1) * N] for b in range(B)]
    wrong = [[t for t, r in zip(group, rewards[b].tolist()) if r < 0.5] for b, group in enumerate(groups)]
    n_distinct, n_wrong, n_agree, B = distributed.sum_floats(  # over ranks: each holds its own prompts' texts
        [sum(len(set(w)) for w in wrong), sum(len(w) for w in wrong), sum(len(set(g)) == 1 for g in groups), B])
    return {"train/wrong_distinct_frac": n_distinct / n_wrong if n_wrong else float("nan"),
            "train/all_agree_frac": n_agree / B}


# ----------------------------------------------------------------------------- the PPO update

def ppo_update(cfg: Config, policy, batch: StepBatch, rows) -> tuple[float, float, dict]:
    """One optimizer update on a mini-batch of rows [m], in micro-batches; returns (loss, grad norm, stats).

    The mini-batch sets the loss's denominators; its silent rows skip the forward and backward when
    batch.skip_silent. clip_frac and approx_kl count the tokens of rows with signal, so they do not depend on the skip.
    """
    rl, world = cfg.rl, distributed.world_size()
    mask = batch.loss_mask[rows]
    signal_mask = batch.loss_mask * (~batch.silent)[:, None]  # [b*N, L]
    run_rows = rows[~batch.silent[rows]] if batch.skip_silent else rows
    n_rows = len(rows) * world  # the mini-batch's rows on all ranks (each holds as many)
    if rl.loss_agg == "seq_mean" and rl.mask_truncated:  # rows left without loss tokens are not in the mean
        n_rows = int(distributed.all_reduce_sum((mask.sum(1) > 0).sum()).item())
    if rl.loss_agg == "token_mean":
        denominator = distributed.all_reduce_sum(mask.sum()).clamp(min=1)  # the mini-batch's tokens on all ranks
    elif rl.loss_agg == "constant":
        denominator = torch.tensor(float(n_rows * cfg.task.max_new_tokens))
    group_size = rl.responses_per_prompt // rl.minibatches  # rows come grouped by prompt
    total_loss, clip_sum, kl_sum, approx_kl_sum, dual_sum, capped_sum = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    micros = micro_slices(len(run_rows), group_size, rl.micro_batch)
    if not micros:  # nothing to run: the gradient is 0, and Adam's step still applies its momentum, as before
        for param in policy.parameters():
            param.grad = torch.zeros_like(param) if param.requires_grad else None
    for i, micro in enumerate(micros):
        part = run_rows[micro]
        part_mask = batch.loss_mask[part]
        with distributed.gradient_sync(policy, last_micro_batch=i == len(micros) - 1):
            logp, _ = logprobs(policy, batch.input_ids[part], batch.attention_mask[part], batch.response_mask[part],
                               cfg, batch.valid_vocab, group_size)
            token_loss, clipped = ppo_token_loss(logp, batch.old_logp[part], batch.advantages[part], rl.eps_low,
                                                 rl.eps_high)
            if rl.dual_clip:
                token_loss, dual_clipped = dual_clip(token_loss, batch.advantages[part], rl.dual_clip)
                dual_sum += (dual_clipped * signal_mask[part]).sum().item()
            if rl.tis_cap:  # truncated importance sampling: the trainer's old policy over the sampler's, capped
                tis_weight = torch.exp(batch.old_logp[part] - batch.sampler_logp[part])  # [r, L], no grad
                token_loss = token_loss * tis_weight.clamp(max=rl.tis_cap)
                capped_sum += ((tis_weight > rl.tis_cap).float() * signal_mask[part]).sum().item()
            if batch.ref_logp is not None:
                kl = kl_k3(logp, batch.ref_logp[part])
                token_loss = token_loss + rl.kl_coef * kl
                kl_sum += (kl.detach() * part_mask).sum().item()
            if rl.loss_agg == "seq_mean":  # mean over each row's tokens, then over rows
                loss = ((token_loss * part_mask).sum(1) / part_mask.sum(1).clamp(min=1)).sum() / n_rows
            else:
                loss = (token_loss * part_mask).sum() / denominator
            # DDP and FSDP2 average gradients over ranks: times world, that is the sum, the single-process gradient
            (loss * world).backward()
        total_loss += loss.item()
        part_signal = signal_mask[part]
        clip_sum += (clipped * part_signal).sum().item()
        log_ratio = (logp.detach() - batch.old_logp[part]) * part_signal
        approx_kl_sum += ((torch.exp(log_ratio) - 1 - log_ratio) * part_signal).sum().item()
    grad_norm = distributed.grad_norm_value(torch.nn.utils.clip_grad_norm_(policy.parameters(), rl.grad_clip))
    total_loss, clip_sum, kl_sum, approx_kl_sum, n_signal, n_tokens = distributed.sum_floats(  # over all ranks
        [total_loss, clip_sum, kl_sum, approx_kl_sum, signal_mask[rows].sum().item(), mask.sum().item()])
    n_signal, n_tokens = max(n_signal, 1.0), max(n_tokens, 1.0)
    dual_sum, capped_sum = distributed.sum_floats([dual_sum, capped_sum])
    return total_loss, grad_norm, {"clip_frac": clip_sum / n_signal, "approx_kl": approx_kl_sum / n_signal,
                                   "kl": kl_sum / n_tokens, "dual_clip_frac": dual_sum / n_signal,
                                   "tis_capped_frac": capped_sum / n_signal}


def ppo_token_loss(logp, old_logp, advantages, eps_low, eps_high):
    """PPO-clip with clip-higher, per token: -min(r A, clip(r, 1-eps_low, 1+eps_high) A); also clipped [R, L]."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * advantages
    return -torch.minimum(unclipped, clipped), (clipped < unclipped).float()


def dual_clip(token_loss, advantages, c):
    """Dual-clip for negative advantages (Ye et al. 2020, as verl does it): with A < 0 the token loss is at most
    -c A (c > 1 + eps_high), so a token whose ratio has grown far above 1 cannot blow the loss up; where the bound
    binds the gradient is 0. Returns the loss [R, L] and where the bound binds (0/1)."""
    bound = -c * advantages  # [R, 1]
    binds = (advantages < 0) & (token_loss > bound)
    return torch.where(binds, bound, token_loss), binds.float()


def kl_k3(logp, ref_logp):
    """Schulman's k3 estimator of KL(policy || reference), per token: exp(ref - logp) - (ref - logp) - 1."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


# ----------------------------------------------------------------------------- the run

def train(cfg: Config, log=print) -> dict:
    """Warm start, then RL; returns the final evaluation metrics. Ctrl-C, SIGTERM and SIGHUP stop the run after the
    step in progress, with a checkpoint of that step (checkpoint.GracefulStop); `--resume` continues it."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = distributed.setup(pick_device(cfg.run.device))  # joins torchrun's process group, if any
    world, main_rank = distributed.world_size(), distributed.is_main()
    if cfg.rl.resample_rounds and world > 1:
        raise ConfigError("rl.resample_rounds (dynamic sampling) runs in one process: under torchrun the refilled "
                          "batch would have to move rollouts between ranks")
    if cfg.rl.prompts_per_step % world:
        raise ConfigError(f"rl.prompts_per_step={cfg.rl.prompts_per_step} must be a multiple of the number of ranks "
                          f"({world}): each rank samples an equal share of the prompts")
    if not main_rank:
        log = lambda *args, **kwargs: None  # rank 0 alone prints, logs, plots
    torch.manual_seed(cfg.run.seed)
    random.seed(cfg.run.seed)
    run_dir = prepare_run_dir(os.path.join(cfg.run.out_dir, cfg.run.name), cfg.run.resume, dataclasses.asdict(cfg),
                              main_rank)
    candidates, notes = resume_candidates(run_dir) if cfg.run.resume else ([], [])
    for note in notes:
        log(f"--resume: {note}")
    if cfg.run.resume and not candidates:
        log(f"--resume: no checkpoint in {run_dir}, starting fresh")
    task = build_task(cfg)
    # the policy RL starts from: model.init, or the warm start (trained once, then loaded from its cache)
    start = resolve_checkpoint(cfg.model.init) if cfg.model.init else None
    policy, tokenizer = build_policy(cfg, device, checkpoint=start)
    check_prompt_lengths(cfg, task, tokenizer, policy.context_length)
    if not start and cfg.sft.steps > 0 and (not candidates or cfg.rl.kl_coef > 0):  # resumed: only for the reference
        warm_start(cfg, policy, tokenizer, task, device, log)
    reference = None
    if cfg.rl.kl_coef > 0 and cfg.model.lora_rank:  # LoRA: the policy itself with its adapters off, no copy
        reference = policy.without_adapters()
    elif cfg.rl.kl_coef > 0:  # a frozen copy of the starting policy, only when the KL term is on
        reference = build_policy(cfg, device, checkpoint=start)[0]
        reference.load_state_dict(policy.state_dict())
        reference.requires_grad_(False).eval()
    resume_from = load_newest_intact(candidates, policy, dataclasses.asdict(cfg), log) if candidates else None
    policy = distributed.wrap(policy, distributed.resolve_mode(cfg.run.distributed, bool(cfg.model.hf),
                                                               lora=cfg.model.lora_rank > 0), device)
    if reference is not None and distributed.is_sharded(policy):
        reference = distributed.shard(reference)  # forward only, but as large as the policy
    # after wrap: FSDP2 swaps in sharded parameters
    optimizer = make_optimizer(policy, cfg.rl.lr, cfg.rl.weight_decay, cfg.rl.adam_beta2)
    start_step, evals, run_id = 0, {"before": None, "after": None}, uuid.uuid4().hex[:12]
    if resume_from:
        state = distributed.load_trainer_state(resume_from, policy, optimizer)
        set_rng_state(state["rng"])
        start_step, evals, run_id = state["step"], state["evals"], state.get("run_id", "")
        if start_step < cfg.rl.steps:  # more steps asked of a finished run: train on, evaluate again
            evals["after"] = None
        log(f"resumed from {resume_from} at step {start_step}")
    metrics_log = MetricsLog(os.path.join(run_dir, "metrics.jsonl") if main_rank else None,
                             resume_step=start_step if resume_from else None, log=log)

    def save(step):
        if not distributed.any_rank(not all(torch.isfinite(p).all() for p in policy.parameters())):
            state = {"step": step, "rng": rng_state(), "evals": evals, "run_id": run_id}
            return distributed.save_checkpoint(run_dir, step, policy, optimizer, state, dataclasses.asdict(cfg),
                                               keep=cfg.run.keep_checkpoints, run_id=run_id)
        raise Diverged(f"the weights are no longer finite at step {step}: not saved; the last good checkpoint is "
                       f"{latest_checkpoint(run_dir)} (lower rl.lr)")

    with GracefulStop(log) as stop:
        if evals["before"] is None and cfg.eval.before:
            evals["before"] = run_eval(cfg, policy, tokenizer, task)
            metrics_log.write(0, evals["before"])
            log("before RL: " + evaluation.format_metrics(evals["before"]))
        skipped_in_a_row, updates_per_step = 0, cfg.rl.epochs * cfg.rl.minibatches
        progress = _progress(range(start_step, cfg.rl.steps), cfg.run.progress and main_rank)
        with stop.deferred():
            for step in progress:
                for group in optimizer.param_groups:  # rl.warmup, then rl.lr_schedule
                    group["lr"] = scheduled_lr(cfg.rl.lr, step, cfg.rl.warmup, cfg.rl.steps,
                                               cosine=cfg.rl.lr_schedule == "cosine")
                metrics = rl_step(step, cfg, policy, reference, optimizer, task, tokenizer, device)
                done = step + 1
                if cfg.eval.every and done % cfg.eval.every == 0 and done < cfg.rl.steps:
                    metrics.update(run_eval(cfg, policy, tokenizer, task))
                metrics_log.write(done, metrics)
                if hasattr(progress, "set_postfix"):
                    progress.set_postfix(reward=f"{metrics['train/reward']:.3f}", phase=metrics["train/advantage"])
                skipped = metrics["train/skipped_updates"]
                skipped_in_a_row = skipped_in_a_row + skipped if skipped == updates_per_step else skipped
                if cfg.rl.max_skipped_updates and skipped_in_a_row >= cfg.rl.max_skipped_updates:
                    raise Diverged(f"{skipped_in_a_row} updates in a row had a non-finite loss or gradient (step "
                                   f"{done}): the last good checkpoint is {latest_checkpoint(run_dir)} (lower rl.lr)")
                if distributed.any_rank(stop.requested is not None):  # a signal: save this step, then stop
                    save(done)
                    log(f"stopped after step {done} with a checkpoint: --resume continues the run")
                    raise Stopped(stop.requested or signal.SIGINT)
                if done % cfg.run.checkpoint_every == 0 and done < cfg.rl.steps:
                    save(done)
        if evals["after"] is None:  # (a finished run that is resumed only redraws its report)
            final = save(cfg.rl.steps) if start_step < cfg.rl.steps or not resume_from else resume_from
            evals["after"] = run_eval(cfg, policy, tokenizer, task)  # a stop here loses nothing: the weights are saved
            metrics_log.write(cfg.rl.steps, evals["after"])
            if main_rank:
                record_evals(final, evals)
    if not main_rank:
        return evals["after"]
    evaluation.plot_run(run_dir)
    table = evaluation.summary_table(evals["before"] or {}, evals["after"], cfg.eval.ks)
    with open(os.path.join(run_dir, "summary.md"), "w") as f:
        f.write(table + "\n")
    log(f"\nheld-out {cfg.task.name}: {cfg.eval.n_problems} problems, pass@k from n = {cfg.eval.n_samples} samples "
        f"at temperature {cfg.eval.temperature}\n" + table + f"\n(plots and metrics in {run_dir}/)")
    return evals["after"]


def run_eval(cfg, policy, tokenizer, task) -> dict:
    with distributed.full_weights(policy) as sampler:  # under torchrun each rank samples a share of the problems
        return evaluation.evaluate(sampler, tokenizer, task.heldout[:cfg.eval.n_problems], task.name,
                                   n=cfg.eval.n_samples, max_new_tokens=cfg.task.max_new_tokens,
                                   temperature=cfg.eval.temperature, top_p=cfg.eval.top_p, ks=cfg.eval.ks,
                                   seed=cfg.run.seed, reward_options=reward_options(cfg))


def _progress(steps, enabled):
    if not enabled:
        return steps
    from tqdm import tqdm
    return tqdm(steps, desc="RL", dynamic_ncols=True)


def main(argv=None):
    try:
        cfg, _ = parse_args(sys.argv[1:] if argv is None else argv, usage=__doc__)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    try:
        train(cfg)
        distributed.barrier()  # every rank is done (rank 0 plots last): none closes its connections early
    except (ConfigError, RunError) as err:  # a bad data file, a model that cannot load, a damaged run, divergence
        sys.exit(f"error: {err}")
    except KeyboardInterrupt as stop:  # 128 + the signal's number, as a shell reports it
        sys.exit(128 + getattr(stop, "signum", signal.SIGINT))
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()
