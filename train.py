"""Train a policy with RL from verifiable rewards: warm start, then PPO/GRPO with Pass@k advantages.

    python train.py --config configs/maze.yaml               # the maze demo (CPU, minutes)
    python train.py --config configs/maze.yaml --rl.k 8      # any field can be overridden
    python train.py --config configs/maze.yaml --resume      # continue from runs/<name>/latest
    python train.py --help                                   # every field with its meaning
    torchrun --nproc_per_node=8 train.py --config ...        # data parallel: DDP, or FSDP2 for model.hf

Stage 1, warm start: supervised training on the task's demonstrations (BFS paths for
mazes), cached under a key of its own config in runs/_warmstart/, so that later runs
(other advantages, other seeds) reuse it; skipped when `model.init` names a checkpoint.

Stage 2, RL. One step, as docs/design.md draws it:
  1. sample B prompts, N responses each (rollout.py: KV cache, seed per prompt)
  2. score them (reward.py) -> rewards [B, N]
  3. recompute old log-probs and per-token entropy with the training path, no grad
  4. advantages from the active phase's estimator (advantage.py) -> [B, N]
  5. epochs x mini-batches of PPO-clip updates (clip-higher), token-mean loss,
     optional k3 KL to a frozen reference, gradient clipping, AdamW; prompts whose
     advantages are all 0 skip the forward/backward (same gradient: rl.skip_zero_advantage)
What it keeps from DAPO (the paper's recipe): clip-higher and token-level loss. What it
leaves out by default: the KL term, the entropy bonus, dynamic sampling.

A run writes runs/<name>/: config.yaml, metrics.jsonl, ckpt_<step>/ (atomic), latest,
curves.png and passk.png. Ctrl-C saves a checkpoint before exiting. The config and the
builders of the task and the policy are config.py's.

Under torchrun (distributed.py) the batch stays global: rank r samples a contiguous share of the
B prompts, all N responses of a prompt on one rank, with the prompt's global seed; rewards and
per-prompt entropies are gathered so every rank computes the estimator on the whole batch; loss
denominators are global token (or row) counts; so the update equals a single process's at any
number of ranks. Every rank runs the same warm start (rank 0 writes its cache; the wrapper then
gives every rank rank 0's weights). Rank 0 alone logs, plots and prints; Ctrl-C does not save (the
ranks may stop at different collectives): resume from the last periodic checkpoint.
"""
import dataclasses
import hashlib
import inspect
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass

import torch
import yaml

import advantage
import distributed
import eval as evaluation
import reward
from checkpoint import (MetricsLog, holds_run, latest_checkpoint, resolve_checkpoint, rng_state, save_checkpoint,
                        set_rng_state)
from config import (Config, ConfigError, ModelConfig, active_phase, build_policy, build_task, parse_args,
                    pick_device, reward_options)
from rollout import combine_seeds, concat_rollouts, generate, micro_slices, right_pad, sequences_batch


# ----------------------------------------------------------------------------- stage 1: warm start

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
        if not distributed.is_main():
            return None
        return save_checkpoint(cache_dir, step, policy, {"step": step, "optimizer": optimizer.state_dict()},
                               dataclasses.asdict(cfg))

    if start >= cfg.sft.steps:
        return checkpoint
    policy.train()
    step, loss_avg, t0 = start, None, time.time()
    try:
        for step in range(start, cfg.sft.steps):
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(cfg.sft.lr, step, cfg.sft.warmup, cfg.sft.steps, cosine=True)
            loss = sft_step(policy, optimizer, task.train_batch("sft", step, cfg.sft.batch_size), tokenizer, cfg,
                            device)
            loss_avg = loss if loss_avg is None else 0.95 * loss_avg + 0.05 * loss
            if (step + 1) % 100 == 0 or step + 1 == cfg.sft.steps:
                log(f"warm start step {step + 1}/{cfg.sft.steps}: loss {loss_avg:.4f} ({time.time() - t0:.0f}s)")
        step = cfg.sft.steps
    except KeyboardInterrupt:
        log(f"interrupted: saving the warm start at step {step}")
        save(step)
        raise
    return save(step)


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


# ----------------------------------------------------------------------------- stage 2: one RL step

@dataclass
class StepBatch:
    """This rank's rows of one RL step, b prompts x N responses grouped by prompt: what the PPO update reads."""
    input_ids: torch.Tensor       # [b*N, P+L] the left-padded prompt, then the response
    attention_mask: torch.Tensor  # [b*N, P+L]
    response_mask: torch.Tensor   # [b*N, L] 1 on response tokens, EOS included
    loss_mask: torch.Tensor       # [b*N, L] the tokens the loss counts (rl.mask_truncated drops rows without EOS)
    old_logp: torch.Tensor        # [b*N, L] log-probs before the update: the PPO ratio's denominator
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
    t0 = time.time()

    # 1. sample b prompts x N responses; the randomness of prompt i comes from (run seed, step, i), i global
    problems = task.train_batch(f"rl{cfg.run.seed}", step, B)[first:first + b]  # each run seed its own stream
    prompts = [tokenizer.encode_prompt(p.prompt) for p in problems]
    policy.eval()
    seeds = [combine_seeds(cfg.run.seed, step, first + i) for i in range(b)]
    chunk = rl.rollout_prompts or b  # prompts per generate call: bounds the KV cache (B*N rows at once otherwise)
    with distributed.full_weights(policy) as sampler:
        rollout = concat_rollouts([
            generate(sampler, prompts[i:i + chunk], n=N, max_new_tokens=cfg.task.max_new_tokens,
                     eos_ids=tokenizer.eos_ids, pad_id=tokenizer.pad_id, valid_vocab=tokenizer.vocab_size,
                     temperature=rl.temperature, top_p=rl.top_p, top_k=rl.top_k, seeds=seeds[i:i + chunk])
            for i in range(0, b, chunk)], tokenizer.pad_id)
    t_rollout = time.time() - t0

    # 2. score
    texts = [tokenizer.decode(row) for row in rollout.tokens.tolist()]
    golds = [p.gold for p in problems for _ in range(N)]
    timeouts_before = reward.verifier_stats().get("timeouts", 0)
    rewards = torch.tensor(reward.score_batch(task.name, texts, golds, **reward_options(cfg)),
                           dtype=torch.float32, device=device).view(b, N)

    # 3. old log-probs and entropy with the training path (never the sampler's: docs/design.md, Contracts)
    row_prompts = [p for p in prompts for _ in range(N)]
    input_ids, attention_mask = sequences_batch(row_prompts, rollout.tokens, rollout.response_mask, tokenizer.pad_id)
    response_mask = rollout.response_mask  # [b*N, L]
    with torch.no_grad():
        old_logp, entropy = no_grad_logprobs(policy, input_ids, attention_mask, response_mask, cfg,
                                             tokenizer.vocab_size, N, return_entropy=True)
        ref_logp = no_grad_logprobs(reference, input_ids, attention_mask, response_mask, cfg, tokenizer.vocab_size,
                                    N)[0] if reference is not None else None
    tokens_per_prompt = response_mask.view(b, N, -1).sum((1, 2))
    prompt_entropy = (entropy * response_mask).view(b, N, -1).sum((1, 2)) / tokens_per_prompt  # [b]

    # 4. advantages [B, N] from the active phase's estimator, on the whole batch on every rank
    #    (entropy_adaptive ranks all B prompts; the bootstrap's generator is the same everywhere)
    all_rewards = distributed.all_gather_rows(rewards)  # [B, N]
    all_prompt_entropy = distributed.all_gather_rows(prompt_entropy)  # [B]
    estimator = advantage.ESTIMATORS[phase["advantage"]]
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
        old_logp=old_logp, ref_logp=ref_logp,
        advantages=advantages[first:first + b].reshape(b * N, 1).float(),  # this rank's, broadcast over tokens
        silent=silent_prompts[first:first + b].to(device).repeat_interleave(N),
        skip_silent=rl.skip_zero_advantage and rl.kl_coef == 0 and distributed.world_size() == 1,
        valid_vocab=tokenizer.vocab_size)

    # 5. PPO updates: each mini-batch takes an equal random share of every prompt's responses
    policy.train()
    order = torch.Generator().manual_seed(combine_seeds(cfg.run.seed, step, 0x5EED))
    stats = {"clip_frac": [], "approx_kl": [], "grad_norm": [], "loss": [], "kl": []}
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
        "train/approx_kl": mean(stats["approx_kl"]),
        "train/kl_ref": mean(stats["kl"]),
        "train/grad_norm": mean(stats["grad_norm"]),
        "train/skipped_updates": skipped,
        "train/zero_adv_frac": silent_prompts.float().mean().item(),
        "train/updated_rows_frac": updated.float().mean().item(),
        "train/adv_abs": advantages.abs().mean().item(),
        "train/resp_len": (tokens / (B * N)).item(),
        "train/truncated_frac": (truncated / (B * N)).item(),
        "train/sampler_logp_gap": logp_gap.item() / tokens.item(),
        "train/lr": optimizer.param_groups[0]["lr"],
        "train/advantage": phase["advantage"],
        "train/k": phase["k"],
        "train/verifier_timeouts": int(timeouts.item()),
        "time/rollout_s": t_rollout,
        "time/step_s": time.time() - t0,
    }


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
    if rl.loss_agg == "token_mean":
        denominator = distributed.all_reduce_sum(mask.sum()).clamp(min=1)  # the mini-batch's tokens on all ranks
    elif rl.loss_agg == "constant":
        denominator = torch.tensor(float(n_rows * cfg.task.max_new_tokens))
    group_size = rl.responses_per_prompt // rl.minibatches  # rows come grouped by prompt
    total_loss, clip_sum, kl_sum, approx_kl_sum = 0.0, 0.0, 0.0, 0.0
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
    return total_loss, grad_norm, {"clip_frac": clip_sum / n_signal, "approx_kl": approx_kl_sum / n_signal,
                                   "kl": kl_sum / n_tokens}


def ppo_token_loss(logp, old_logp, advantages, eps_low, eps_high):
    """PPO-clip with clip-higher, per token: -min(r A, clip(r, 1-eps_low, 1+eps_high) A); also clipped [R, L]."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * advantages
    return -torch.minimum(unclipped, clipped), (clipped < unclipped).float()


def kl_k3(logp, ref_logp):
    """Schulman's k3 estimator of KL(policy || reference), per token: exp(ref - logp) - (ref - logp) - 1."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


# ----------------------------------------------------------------------------- the run

def train(cfg: Config, log=print) -> dict:
    """Warm start, then RL; returns the final evaluation metrics."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = distributed.setup(pick_device(cfg.run.device))  # joins torchrun's process group, if any
    world, main_rank = distributed.world_size(), distributed.is_main()
    if cfg.rl.prompts_per_step % world:
        raise ConfigError(f"rl.prompts_per_step={cfg.rl.prompts_per_step} must be a multiple of the number of ranks "
                          f"({world}): each rank samples an equal share of the prompts")
    if not main_rank:
        log = lambda *args, **kwargs: None  # rank 0 alone prints, logs, plots
    torch.manual_seed(cfg.run.seed)
    random.seed(cfg.run.seed)
    run_dir = os.path.join(cfg.run.out_dir, cfg.run.name)
    if not cfg.run.resume and holds_run(run_dir):  # never overwrite an earlier run's checkpoints
        raise ConfigError(f"{run_dir} already holds a run: add --resume to continue it, or give this run "
                          f"its own --run.name")
    os.makedirs(run_dir, exist_ok=True)
    if main_rank:
        with open(os.path.join(run_dir, "config.yaml"), "w") as f:
            yaml.safe_dump(dataclasses.asdict(cfg), f, sort_keys=False)
    task = build_task(cfg)

    resume_from = latest_checkpoint(run_dir) if cfg.run.resume else None
    if cfg.run.resume and resume_from is None:
        log(f"--resume: no checkpoint in {run_dir}, starting fresh")
    # the policy RL starts from: model.init, or the warm start (trained once, then loaded from its cache)
    start = resolve_checkpoint(cfg.model.init) if cfg.model.init else None
    policy, tokenizer = build_policy(cfg, device, checkpoint=start)
    if not start and cfg.sft.steps > 0 and (not resume_from or cfg.rl.kl_coef > 0):  # resumed: only for the reference
        warm_start(cfg, policy, tokenizer, task, device, log)
    reference = None
    if cfg.rl.kl_coef > 0 and cfg.model.lora_rank:  # LoRA: the policy itself with its adapters off, no copy
        reference = policy.without_adapters()
    elif cfg.rl.kl_coef > 0:  # a frozen copy of the starting policy, only when the KL term is on
        reference = build_policy(cfg, device, checkpoint=start)[0]
        reference.load_state_dict(policy.state_dict())
        reference.requires_grad_(False).eval()
    if resume_from:
        policy.load_weights(resume_from)
    policy = distributed.wrap(policy, distributed.resolve_mode(cfg.run.distributed, bool(cfg.model.hf),
                                                               lora=cfg.model.lora_rank > 0), device)
    if reference is not None and distributed.is_sharded(policy):
        reference = distributed.shard(reference)  # forward only, but as large as the policy
    # after wrap: FSDP2 swaps in sharded parameters
    optimizer = make_optimizer(policy, cfg.rl.lr, cfg.rl.weight_decay, cfg.rl.adam_beta2)
    start_step, before, after = 0, None, None
    if resume_from:
        state = distributed.load_trainer_state(resume_from, policy, optimizer)
        set_rng_state(state["rng"])
        start_step, before = state["step"], state.get("eval_before")
        after = state.get("eval_after") if start_step >= cfg.rl.steps else None  # more steps asked: train on
        log(f"resumed from {resume_from} at step {start_step}")
    metrics_log = MetricsLog(os.path.join(run_dir, "metrics.jsonl") if main_rank else None,
                             resume_step=start_step if resume_from else None)

    def save(step):
        state = {"step": step, "rng": rng_state(), "eval_before": before, "eval_after": after}
        return distributed.save_checkpoint(run_dir, step, policy, optimizer, state, dataclasses.asdict(cfg),
                                           keep=cfg.run.keep_checkpoints)

    if before is None and cfg.eval.before:
        before = run_eval(cfg, policy, tokenizer, task)
        metrics_log.write(0, before)
        log("before RL: " + format_metrics(before))
    step = start_step
    progress = _progress(range(start_step, cfg.rl.steps), cfg.run.progress and main_rank)
    try:
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
            if done % cfg.run.checkpoint_every == 0 and done < cfg.rl.steps:
                save(done)
        step = cfg.rl.steps
    except KeyboardInterrupt:
        if world > 1:  # the ranks may have stopped at different collectives: saving could hang
            log(f"\ninterrupted at step {step}: --resume continues from the last checkpoint")
            raise
        log(f"\ninterrupted: saving a checkpoint at step {step}")
        save(step)
        raise
    if after is None:  # (a finished run that is resumed only redraws its report)
        after = run_eval(cfg, policy, tokenizer, task)
        metrics_log.write(cfg.rl.steps, after)
        save(cfg.rl.steps)
    if not main_rank:
        return after
    evaluation.plot_run(run_dir)
    table = summary_table(before or {}, after, cfg.eval.ks)
    with open(os.path.join(run_dir, "summary.md"), "w") as f:
        f.write(table + "\n")
    log(f"\nheld-out {cfg.task.name}: {cfg.eval.n_problems} problems, pass@k from n = {cfg.eval.n_samples} samples "
        f"at temperature {cfg.eval.temperature}\n" + table + f"\n(plots and metrics in {run_dir}/)")
    return after


def make_optimizer(policy, lr, weight_decay, beta2=0.95):
    trainable = [p for p in policy.parameters() if p.requires_grad]  # LoRA: the adapters; AdamW state for them alone
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay, betas=(0.9, beta2))


def run_eval(cfg, policy, tokenizer, task) -> dict:
    with distributed.full_weights(policy) as sampler:  # under torchrun each rank samples a share of the problems
        return evaluation.evaluate(sampler, tokenizer, task.heldout[:cfg.eval.n_problems], task.name,
                                   n=cfg.eval.n_samples, max_new_tokens=cfg.task.max_new_tokens,
                                   temperature=cfg.eval.temperature, top_p=cfg.eval.top_p, ks=cfg.eval.ks,
                                   seed=cfg.run.seed, reward_options=reward_options(cfg))


def format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


def summary_table(before: dict, after: dict, ks) -> str:
    columns = [f"pass@{k}" for k in ks] + ["greedy"]
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, metrics in (("before RL", before), ("after RL", after)):
        if not metrics:  # eval.before: false
            continue
        lines.append(f"| {label} | " + " | ".join(f"{100 * metrics.get('eval/' + c, float('nan')):.1f}"
                                                   for c in columns) + " |")
    return "\n".join(lines)


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
    except ConfigError as err:  # found while building: a bad data file, a model that cannot load
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()
