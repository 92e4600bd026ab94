"""One RL step of PPO/GRPO with Pass@k advantages: `rl_step` in six numbered stages, and the
objective, `policy_loss`.

  1. prompts: B problems of the step (tasks.py), a seed each from (run seed, step, index)
  2. N responses per prompt from the KV-cached sampler (rollout.py, model.py), scored (reward.py)
  3. advantages [B, N] from the active phase's estimator (advantage.py)
  4. old log-probs with the training path (model.py, logprob.py), or the sampler's own
  5. rl.epochs x rl.minibatches updates: `ppo_update` micro-batches and sums over ranks;
     `policy_loss` is the objective (PPO-clip with clip-higher; dual-clip, TIS, the k3 KL term)
  6. metrics
A first read may stop at the line "PLUMBING": below it are the metrics and dynamic sampling
(DAPO, rl.resample_rounds). train.py runs the steps (warm start, checkpoints, evaluations).

Under torchrun (distributed.py) rank r samples a contiguous share of the B prompts; rewards and
entropies are gathered so every rank computes the advantages of the whole batch, and the loss's
denominators are global, so the update equals a single process's at any number of ranks.
"""

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch

import advantage
import distributed
import reward
from config import Config, reward_options
from config_checks import active_phase
from rollout import Rollout, combine_seeds, concat_rollouts, generate, micro_slices, sequences_batch


def rl_step(step, cfg: Config, policy, reference, optimizer, task, tokenizer, device) -> dict:
    """One RL step on this rank's share of the batch (b of the B prompts); returns its metrics, and
    under "skipped_each_update" which of its updates a non-finite loss skipped (for rl_loop)."""
    rl, N = cfg.rl, cfg.rl.responses_per_prompt
    b, first = prompt_share(rl.prompts_per_step)  # this rank's prompts: [first, first + b)
    phase = active_phase(cfg, step)  # {advantage, k} of rl.schedule
    clock = {"start": time.time(), "timeouts": reward.verifier_stats().get("timeouts", 0)}

    # 1. prompts: each run seed has its own stream; prompt i of step t is seeded by (seed, t, i)
    problems = task.train_batch(f"rl{cfg.run.seed}", step, rl.prompts_per_step)[first : first + b]
    seeds = [combine_seeds(cfg.run.seed, step, first + i) for i in range(b)]

    # 2. N responses per prompt, scored -> rewards [b, N]
    policy.eval()
    sampled = sample_and_score(cfg, policy, task, tokenizer, problems, seeds, device)
    refill = None
    if rl.resample_rounds:  # dynamic sampling (DAPO): keep the prompts that carry a gradient
        sampled, refill = refill_with_signal(step, cfg, policy, task, tokenizer, device, sampled)
    clock["rollout_s"] = time.time() - clock["start"]

    # 3. advantages [B, N] of the whole batch, on every rank, from the rewards (entropy_adaptive
    #    also ranks prompts by entropy: the training path's, which comes with every old log-prob)
    batch = step_batch(cfg, sampled, tokenizer)
    entropy = sampled.rollout.entropy  # [b*N, L] the sampler's
    if phase["advantage"] == "entropy_adaptive":
        batch.old_logp, entropy = no_grad_logprobs(policy, batch, cfg, return_entropy=True)
    all_rewards = distributed.all_gather_rows(sampled.rewards)  # [B, N]
    if refill is None or refill.advantages is None:
        entropies = mean_entropy(entropy, batch.response_mask, N, rl.entropy_mean)  # [b]
        entropies = distributed.all_gather_rows(entropies)  # [B]
        advantages = compute_advantages(cfg, step, all_rewards, entropies, device)
    else:  # dynamic sampling computed them as it kept the prompts
        advantages = refill.advantages
    zero_advantage = (advantages == 0).all(1)  # [B]: N zero advantages add no gradient
    mine = slice(first, first + len(sampled.prompts))  # this rank's (dynamic sampling: fewer)
    batch.advantages = advantages[mine].reshape(-1, 1).float()  # [b*N, 1]
    batch.zero_advantage = zero_advantage[mine].to(device).repeat_interleave(N)

    # 4. old log-probs [b*N, L]: the training path's, of the rows the update runs (each row gets
    #    the numbers a forward over all would give), or with rl.old_logprobs sampler the sampler's
    if batch.old_logp is None and rl.old_logprobs == "sampler":  # equal up to float rounding
        batch.old_logp = batch.sampler_logp
    elif batch.old_logp is None:  # (entropy_adaptive's forward computed them)
        batch.old_logp = no_grad_logprobs(policy, batch, cfg, rows=update_rows(batch))[0]
    if reference is not None:  # the k3 KL term's frozen reference
        batch.ref_logp, _ = no_grad_logprobs(reference, batch, cfg)

    # 5. PPO updates: epochs x mini-batches, each a random share of every prompt's responses
    policy.train()
    update_stats = ppo_epochs(cfg, step, policy, optimizer, batch, len(all_rewards), first)

    # 6. metrics
    return {
        **sample_metrics(sampled, batch, all_rewards, entropy, refill, clock),
        **update_metrics(cfg, phase, optimizer, batch, advantages, update_stats, refill),
        "time/rollout_s": clock["rollout_s"],
        "time/step_s": time.time() - clock["start"],
        "skipped_each_update": update_stats["skipped"],  # [epochs * minibatches] bool, in order
    }


def prompt_share(n_prompts: int) -> tuple[int, int]:
    """(b, first): this rank's count of the step's prompts and the global index of its first."""
    b = n_prompts // distributed.world_size()
    return b, distributed.rank() * b


class Sampled(NamedTuple):
    """Prompts with their N responses each, decoded and scored (stages 1-2)."""

    problems: list
    prompts: list  # token ids of each prompt
    rollout: Rollout  # [p*N, L] tensors, rows grouped by prompt
    texts: list  # p*N decoded responses
    rewards: torch.Tensor  # [p, N]


def sample_and_score(cfg: Config, policy, task, tokenizer, problems, seeds, device) -> Sampled:
    """N responses per problem (a seed per prompt; the KV-cached sampler), decoded and scored."""
    rl, N = cfg.rl, cfg.rl.responses_per_prompt
    prompts = [tokenizer.encode_prompt(p.prompt) for p in problems]
    chunk = rl.rollout_prompts or len(prompts)  # prompts per call: bounds the KV cache
    # fmt: skip
    sampling = dict(
        n=N,
        max_new_tokens=cfg.task.max_new_tokens,
        eos_ids=tokenizer.eos_ids,
        pad_id=tokenizer.pad_id,
        valid_vocab=tokenizer.vocab_size,
        temperature=rl.temperature,
        top_p=rl.top_p,
        top_k=rl.top_k,
        drop_finished=rl.drop_finished,
        return_entropy=True,  # the step's entropy metric (entropy_adaptive: the training path's)
    )
    with distributed.full_weights(policy) as sampler:
        parts = [
            generate(sampler, prompts[i : i + chunk], seeds=seeds[i : i + chunk], **sampling)
            for i in range(0, len(prompts), chunk)
        ]
    rollout = concat_rollouts(parts, tokenizer.pad_id)  # [p*N, L]
    texts = [tokenizer.decode(row) for row in rollout.tokens.tolist()]
    golds = [p.gold for p in problems for _ in range(N)]
    rewards = reward.score_batch(task.name, texts, golds, **reward_options(cfg))
    rewards = torch.tensor(rewards, dtype=torch.float32, device=device).view(len(prompts), N)
    return Sampled(problems, prompts, rollout, texts, rewards)


@dataclass
class StepBatch:
    """This rank's rows of one RL step, b prompts x N responses grouped by prompt: what the
    update reads. Stage 3 fills the advantages, stage 4 the old (and reference) log-probs
    (entropy_adaptive's stage 3 forward fills the old log-probs too)."""

    input_ids: torch.Tensor  # [b*N, P+L] the left-padded prompt, then the response
    attention_mask: torch.Tensor  # [b*N, P+L]
    response_mask: torch.Tensor  # [b*N, L] 1 on response tokens, EOS included
    loss_mask: torch.Tensor  # [b*N, L] the tokens the loss counts
    sampler_logp: torch.Tensor  # [b*N, L] the sampler's, tempered (rl.tis_cap weighs by it)
    valid_vocab: int  # ids the tokenizer can decode; the log-probs mask the rest
    skip_zero_advantage: bool  # rows of zero-advantage prompts skip the forward and backward
    old_logp: torch.Tensor = None  # [b*N, L] before the update: the PPO ratio's denominator
    ref_logp: torch.Tensor = None  # [b*N, L] the frozen reference's (None: no KL term)
    advantages: torch.Tensor = None  # [b*N, 1] each response's, broadcast over its tokens
    zero_advantage: torch.Tensor = None  # [b*N] bool: the row's prompt has N zero advantages


def step_batch(cfg: Config, sampled: Sampled, tokenizer) -> StepBatch:
    """The training rows of the sampled responses: prompt then response, with their masks."""
    rl, N, rollout = cfg.rl, cfg.rl.responses_per_prompt, sampled.rollout
    row_prompts = [prompt for prompt in sampled.prompts for _ in range(N)]
    input_ids, attention_mask = sequences_batch(
        row_prompts, rollout.tokens, rollout.response_mask, tokenizer.pad_id
    )
    loss_mask = rollout.response_mask
    if rl.mask_truncated:  # drop the responses that never reached EOS
        loss_mask = loss_mask * (~rollout.truncated).float()[:, None]
    # the skip changes nothing but the work: not with a KL term, nor under torchrun (collectives)
    skip = rl.skip_zero_advantage and rl.kl_coef == 0 and distributed.world_size() == 1
    # fmt: skip
    return StepBatch(
        input_ids,
        attention_mask,
        rollout.response_mask,
        loss_mask,
        rollout.sampler_logprobs,
        valid_vocab=tokenizer.vocab_size,
        skip_zero_advantage=skip,
    )


@torch.no_grad()
def no_grad_logprobs(policy, batch: StepBatch, cfg: Config, return_entropy=False, rows=None):
    """logprobs [R, L] of `rows` (default: all R; the others stay 0), the old policy's or the
    reference's, in micro-batches of whole prompts; and the per-token entropy if asked."""
    N, R = cfg.rl.responses_per_prompt, batch.response_mask.shape[0]
    rows = torch.arange(R, device=batch.input_ids.device) if rows is None else rows  # [r]
    slices = micro_slices(len(rows), N, cfg.rl.micro_batch)
    parts = [logprobs(policy, batch, rows[s], cfg, N, return_entropy) for s in slices]
    logp = torch.zeros_like(batch.response_mask)  # [R, L]
    entropy = torch.zeros_like(logp) if return_entropy else None
    if parts:
        logp[rows] = torch.cat([p[0] for p in parts])
        if return_entropy:
            entropy[rows] = torch.cat([p[1] for p in parts])
    return logp, entropy


def update_rows(batch: StepBatch, rows=None):
    """[r] the rows the update runs, of `rows` (default: all): with the zero-advantage skip, only
    those of prompts with a nonzero advantage (at configs/maze.yaml's step 0, 34 of 64 prompts:
    stage 4 took 0.61 s instead of 1.69 s)."""
    if rows is None:
        rows = torch.arange(batch.response_mask.shape[0], device=batch.response_mask.device)
    return rows[~batch.zero_advantage[rows]] if batch.skip_zero_advantage else rows


def logprobs(policy, batch: StepBatch, rows, cfg: Config, rows_per_prompt, return_entropy=False):
    """The training path's log-probs [r, L] of the responses of `rows` (and their entropy): the
    policy's forward returns log-probs, not logits (model.py, logprob.py). The rows come
    rows_per_prompt to a prompt, so the prompt's hidden states are computed once."""
    # fmt: skip
    return policy(
        batch.input_ids[rows],
        batch.attention_mask[rows],
        batch.response_mask[rows],
        temperature=cfg.rl.temperature,
        valid_vocab=batch.valid_vocab,
        return_entropy=return_entropy,
        fused=cfg.rl.logprob == "fused",
        group_size=rows_per_prompt,
    )


def mean_entropy(entropy, response_mask, N, how="token"):
    """Each prompt's mean entropy [b] from per-token entropies [b*N, L]: over all its response
    tokens (token), or each response's token mean, then their mean (response)."""
    L = entropy.shape[1]
    weighted = (entropy * response_mask).view(-1, N, L)  # [b, N, L]
    mask = response_mask.view(-1, N, L)
    if how == "token":
        return weighted.sum((1, 2)) / mask.sum((1, 2))
    return (weighted.sum(-1) / mask.sum(-1)).mean(1)


def compute_advantages(cfg: Config, step, rewards, entropies, device, generator=None):
    """The active phase's estimator on rewards [B, N] -> advantages [B, N]. The bootstrap draws its
    groups from a generator keyed by (seed, step), the same on every rank."""
    phase = active_phase(cfg, step)
    if generator is None:
        seed = combine_seeds(cfg.run.seed, step, 0xAD)
        generator = torch.Generator(device=device).manual_seed(seed)
    options = estimator_options(phase["advantage"], cfg.rl, entropies, generator)
    return advantage.ESTIMATORS[phase["advantage"]](rewards, k=phase["k"], **options)


def estimator_options(name: str, rl, entropies, generator) -> dict:
    """The options an estimator takes beyond (rewards, k): from the rl section and this step."""
    return {
        "passk_bootstrap": {"n_groups": rl.n_groups or None, "generator": generator},
        "rs_grpo": {"beta": rl.rs_beta},
        "best_of_n": {"normalize_std": rl.best_of_n_std},
        "entropy_adaptive": {"prompt_entropy": entropies},
    }.get(name, {})


def ppo_epochs(cfg: Config, step, policy, optimizer, batch: StepBatch, n_prompts, first) -> dict:
    """rl.epochs passes of rl.minibatches updates. Each mini-batch takes an equal random share of
    every prompt's N responses, in an order keyed by (seed, step). Returns each update's stats,
    in order ("skipped": a non-finite loss or gradient skipped that update)."""
    rl, N = cfg.rl, cfg.rl.responses_per_prompt
    b, size = batch.advantages.shape[0] // N, N // rl.minibatches
    order = torch.Generator().manual_seed(combine_seeds(cfg.run.seed, step, 0x5EED))
    stats = {}
    for epoch in range(rl.epochs):
        shares = torch.stack([torch.randperm(N, generator=order) for _ in range(n_prompts)])
        shares = shares[first : first + b]  # [b, N]: this rank's prompts
        for m in range(rl.minibatches):
            picked = shares[:, m * size : (m + 1) * size]  # [b, N/M]
            rows = (torch.arange(b)[:, None] * N + picked).flatten().to(batch.advantages.device)
            optimizer.zero_grad(set_to_none=True)
            update = ppo_update(cfg, policy, batch, rows)
            finite = math.isfinite(update["loss"]) and math.isfinite(update["grad_norm"])
            if finite:  # a non-finite loss or gradient skips the update; the run goes on
                optimizer.step()
            for name, value in {**update, "skipped": not finite}.items():
                stats.setdefault(name, []).append(value)
    optimizer.zero_grad(set_to_none=True)  # the next rollout need not hold the gradients
    return stats


def ppo_update(cfg: Config, policy, batch: StepBatch, rows) -> dict:
    """One update's gradient on a mini-batch of rows [m]: the plumbing around policy_loss
    (micro-batches, denominators over all ranks, the zero-advantage skip, gradient sync).
    Returns the loss, the grad norm and token stats over the rows with an advantage."""
    rl, world = cfg.rl, distributed.world_size()
    counted = batch.loss_mask * (~batch.zero_advantage)[:, None]  # [b*N, L] stats' tokens
    run_rows = update_rows(batch, rows)  # [r]
    denominator = loss_denominator(cfg, batch.loss_mask[rows], len(rows) * world)
    rows_per_prompt = rl.responses_per_prompt // rl.minibatches
    micros = micro_slices(len(run_rows), rows_per_prompt, rl.micro_batch)
    if not micros:  # nothing to run: a zero gradient (Adam's step still applies its momentum)
        for param in policy.parameters():
            param.grad = torch.zeros_like(param) if param.requires_grad else None
    sums = dict.fromkeys(["loss", "clipped", "dual_clipped", "tis_capped", "kl", "approx_kl"], 0.0)
    for i, micro in enumerate(micros):
        part = run_rows[micro]
        ref_logp = None if batch.ref_logp is None else batch.ref_logp[part]
        with distributed.gradient_sync(policy, last_micro_batch=i == len(micros) - 1):
            logp, _ = logprobs(policy, batch, part, cfg, rows_per_prompt)
            # fmt: skip
            loss, token_stats = policy_loss(
                logp,
                batch.old_logp[part],
                batch.advantages[part],
                batch.loss_mask[part],
                denominator,
                rl,
                sampler_logp=batch.sampler_logp[part],
                ref_logp=ref_logp,
            )
            (loss * world).backward()  # DDP and FSDP2 average over ranks: x world is the sum
        sums["loss"] += loss.item()
        for name, per_token in token_stats.items():  # the KL counts every loss token
            mask = batch.loss_mask if name == "kl" else counted
            sums[name] += (per_token * mask[part]).sum().item()
    norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), rl.grad_clip)
    grad_norm = distributed.grad_norm_value(norm)
    return update_summary(sums, grad_norm, counted[rows], batch.loss_mask[rows])


def policy_loss(logp, old_logp, advantages, loss_mask, denominator, rl, sampler_logp=None,
                ref_logp=None):  # fmt: skip
    """The objective on rows [R, L], PPO-clip with clip-higher and the rl section's options:

        token loss = -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A),  r = exp(logp - old_logp)
        dual-clip (rl.dual_clip = c): at most -c A where A < 0
        TIS (rl.tis_cap): times min(exp(old_logp - sampler_logp), cap)
        KL (rl.kl_coef, a reference): + kl_coef * k3(logp, ref_logp)
    summed over loss_mask and divided by `denominator`: the mini-batch's tokens (token_mean) or
    rows x max_new_tokens (constant); seq_mean takes each row's token mean, then divides by
    `denominator` rows. Returns (loss, per-token stats [R, L], no grad). Swap the loss here.
    """
    ratio = torch.exp(logp - old_logp)  # [R, L]
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - rl.eps_low, 1 + rl.eps_high) * advantages
    token_loss = -torch.minimum(unclipped, clipped)
    stats = {"clipped": (clipped < unclipped).float()}
    if rl.dual_clip:  # Ye et al. 2020: where the bound binds, the gradient is 0
        bound = -rl.dual_clip * advantages  # [R, 1]
        binds = (advantages < 0) & (token_loss > bound)
        token_loss = torch.where(binds, bound, token_loss)
        stats["dual_clipped"] = binds.float()
    if rl.tis_cap:  # truncated importance sampling: the trainer's old policy / the sampler's
        tis_weight = torch.exp(old_logp - sampler_logp)  # [R, L], no grad
        token_loss = token_loss * tis_weight.clamp(max=rl.tis_cap)
        stats["tis_capped"] = (tis_weight > rl.tis_cap).float()
    if ref_logp is not None:
        kl = kl_k3(logp, ref_logp)
        token_loss = token_loss + rl.kl_coef * kl
        stats["kl"] = kl.detach()
    if rl.loss_agg == "seq_mean":
        row_means = (token_loss * loss_mask).sum(1) / loss_mask.sum(1).clamp(min=1)
        loss = row_means.sum() / denominator
    else:
        loss = (token_loss * loss_mask).sum() / denominator
    log_ratio = logp.detach() - old_logp
    stats["approx_kl"] = torch.exp(log_ratio) - 1 - log_ratio  # k3 of KL(old || new)
    return loss, stats


def kl_k3(logp, ref_logp):
    """Schulman's k3 estimator of KL(policy || reference), per token:
    exp(ref - logp) - (ref - logp) - 1."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


# ======================================================================= PLUMBING: a first read may
# stop here. The loss's denominators, the step's metrics, dynamic sampling (DAPO).


def loss_denominator(cfg: Config, mask, n_rows):
    """What policy_loss divides by, over all ranks: the mini-batch's loss tokens (token_mean),
    its rows (seq_mean; with rl.mask_truncated, those with loss tokens), or rows x
    task.max_new_tokens (constant)."""
    if cfg.rl.loss_agg == "token_mean":
        return distributed.all_reduce_sum(mask.sum()).clamp(min=1)
    if cfg.rl.loss_agg == "constant":
        return torch.tensor(float(n_rows * cfg.task.max_new_tokens))
    if cfg.rl.mask_truncated:
        return int(distributed.all_reduce_sum((mask.sum(1) > 0).sum()).item())
    return n_rows


def update_summary(sums, grad_norm, counted, loss_mask) -> dict:
    """One update's loss, grad norm and token stats as fractions, summed over all ranks."""
    names = list(sums)
    totals = distributed.sum_floats(
        [sums[n] for n in names] + [counted.sum().item(), loss_mask.sum().item()]
    )
    sums, n_counted, n_loss = (
        dict(zip(names, totals[:-2])),
        max(totals[-2], 1.0),
        max(totals[-1], 1.0),
    )
    fractions = {
        n: sums[n] / n_counted for n in ("clipped", "approx_kl", "dual_clipped", "tis_capped")
    }
    return {"loss": sums["loss"], "grad_norm": grad_norm, "kl": sums["kl"] / n_loss, **fractions}


def sample_metrics(sampled: Sampled, batch: StepBatch, all_rewards, entropy, refill, clock) -> dict:
    """What the step sampled: rewards, exploration, entropy, lengths; summed over ranks."""
    rollout, mask = sampled.rollout, batch.response_mask
    timeouts = reward.verifier_stats().get("timeouts", 0) - clock["timeouts"]
    scored = update_rows(batch)  # [r] the rows with old log-probs
    gap = (rollout.sampler_logprobs - batch.old_logp)[scored].abs() * mask[scored]
    sums = [mask.sum(), (entropy * mask).sum(), rollout.truncated.float().sum(), gap.sum()]
    sums += [mask[scored].sum(), torch.tensor(float(timeouts), device=mask.device)]
    sums = distributed.all_reduce_sum(torch.stack(sums))
    tokens, entropy_sum, truncated, logp_gap, scored_tokens, timeouts = sums
    n_responses = all_rewards.numel()
    return {
        "train/reward": all_rewards.mean().item(),
        # dynamic sampling trains on the kept prompts: train/reward is theirs, this is every one's
        **({"train/reward_sampled": refill.sampled_reward} if refill else {}),
        "train/solved_any": (all_rewards.max(1).values > 0).float().mean().item(),
        **diversity_metrics(sampled.texts, sampled.rewards),
        "train/entropy": (entropy_sum / tokens).item(),
        "train/resp_len": (tokens / n_responses).item(),
        "train/truncated_frac": (truncated / n_responses).item(),
        # over the rows the update runs: the others' old log-probs are never computed
        "train/sampler_logp_gap": logp_gap.item() / max(scored_tokens.item(), 1.0),
        "train/verifier_timeouts": int(timeouts.item()),
    }


def update_metrics(
    cfg: Config, phase, optimizer, batch: StepBatch, advantages, stats, refill
) -> dict:
    """What the update did: the loss, its clipping, KLs, gradients, zero-advantage prompts."""
    mean = lambda name: sum(stats[name]) / len(stats[name]) if stats.get(name) else math.nan
    zero_advantage = (advantages == 0).all(1)  # [B] (rl_step's, over the whole batch)
    updated = ~batch.zero_advantage[:: cfg.rl.responses_per_prompt].cpu()
    if not batch.skip_zero_advantage:
        updated = torch.ones_like(updated)
    return {
        "train/loss": mean("loss"),
        "train/clip_frac": mean("clipped"),
        **({"train/dual_clip_frac": mean("dual_clipped")} if cfg.rl.dual_clip else {}),
        **({"train/tis_capped_frac": mean("tis_capped")} if cfg.rl.tis_cap else {}),
        **({"train/resampled_prompts": refill.resampled} if refill else {}),
        **({"train/nonzero_advantage_prompts": int((~zero_advantage).sum())} if refill else {}),
        "train/approx_kl": mean("approx_kl"),
        "train/kl_ref": mean("kl"),
        "train/grad_norm": mean("grad_norm"),
        "train/skipped_updates": sum(stats["skipped"]),
        "train/zero_advantage_frac": zero_advantage.float().mean().item(),
        "train/updated_rows_frac": updated.float().mean().item(),
        "train/adv_abs": advantages.abs().mean().item(),
        "train/lr": optimizer.param_groups[0]["lr"],
        "train/advantage": phase["advantage"],
        "train/k": phase["k"],
    }


def diversity_metrics(texts: list[str], rewards) -> dict:
    """Exploration, as the paper measures it: distinct answers among the wrong responses, and the
    prompts whose N responses all agree; summed over ranks (each holds its prompts' texts)."""
    n_prompts, N = rewards.shape
    groups = [texts[i * N : (i + 1) * N] for i in range(n_prompts)]
    wrong = [[t for t, r in zip(g, rewards[i].tolist()) if r < 0.5] for i, g in enumerate(groups)]
    counts = [sum(len(set(w)) for w in wrong), sum(len(w) for w in wrong)]
    counts += [sum(len(set(g)) == 1 for g in groups), n_prompts]
    n_distinct, n_wrong, n_agree, n_all = distributed.sum_floats(counts)
    return {
        "train/wrong_distinct_frac": n_distinct / n_wrong if n_wrong else float("nan"),
        "train/all_agree_frac": n_agree / n_all,
    }


class Refill(NamedTuple):
    advantages: torch.Tensor | None  # [B, N] as the prompts were kept (None: computed in stage 4)
    resampled: int  # prompts sampled beyond the first B
    sampled_reward: float  # the mean reward of every response sampled, kept or not


def refill_with_signal(step, cfg: Config, policy, task, tokenizer, device, sampled: Sampled):
    """Dynamic sampling: keep the prompts whose advantages are not all 0 and refill the batch
    from the step's own refill stream (seeds keyed by seed, step and index: a resumed run draws
    them again), at most rl.resample_rounds rounds of B prompts. Returns (batch, Refill). A round's
    advantages are computed as it is filtered and kept, so the step trains on exactly those the
    filter saw (the bootstrap draws once). entropy_adaptive ranks the final batch, so it keeps the
    prompts whose Pass@1 and Pass@k advantages are both nonzero (k <= wrong < N), then computes."""
    rl, B, N = cfg.rl, cfg.rl.prompts_per_step, cfg.rl.responses_per_prompt
    adaptive = active_phase(cfg, step)["advantage"] == "entropy_adaptive"
    kept, kept_advantages, reward_sum, round_ = None, [], 0.0, 0
    while round_ <= rl.resample_rounds and (kept is None or len(kept.prompts) < B):
        more = (
            sampled
            if round_ == 0
            else refill_round(step, cfg, policy, task, tokenizer, device, round_)
        )
        reward_sum += more.rewards.sum().item()
        keep, advantages = kept_prompts(cfg, step, more.rewards, round_, adaptive, device)
        more = take_prompts(more, keep.cpu(), N)
        kept = more if kept is None else join_sampled(kept, more, tokenizer.pad_id)
        kept_advantages += [] if adaptive else [advantages[keep]]
        round_ += 1
    resampled = (round_ - 1) * B
    reward_mean = reward_sum / ((B + resampled) * N)
    if not kept.prompts:  # no prompt carried signal: train on the first round as it is
        return sampled, Refill(None, resampled, reward_mean)
    chosen = torch.arange(len(kept.prompts)) < B
    advantages = None if adaptive else torch.cat(kept_advantages)[chosen]
    return take_prompts(kept, chosen, N), Refill(advantages, resampled, reward_mean)


def refill_round(step, cfg: Config, policy, task, tokenizer, device, round_) -> Sampled:
    """Round `round_` of the refill stream: B more prompts with their own seeds."""
    B = cfg.rl.prompts_per_step
    problems = task.train_batch(f"rl{cfg.run.seed}/refill{step}", round_ - 1, B)
    seeds = [combine_seeds(cfg.run.seed, step, round_ * B + i) for i in range(B)]
    return sample_and_score(cfg, policy, task, tokenizer, problems, seeds, device)


def kept_prompts(cfg: Config, step, rewards, round_, adaptive, device):
    """([p] bool: the prompts that carry a gradient, their advantages [p, N] or None)."""
    if adaptive:
        wrong = (rewards < 0.5).sum(1)
        k, N = active_phase(cfg, step)["k"], rewards.shape[1]
        return (wrong >= k) & (wrong < N), None
    seed = combine_seeds(cfg.run.seed, step, 0xAD + round_)  # round 0: the step's own generator
    generator = torch.Generator(device=device).manual_seed(seed)
    advantages = compute_advantages(cfg, step, rewards, None, device, generator)
    return (advantages != 0).any(1), advantages


def take_prompts(sampled: Sampled, chosen, N) -> Sampled:
    """The chosen prompts (a [p] bool mask) of a Sampled, with their N rows each."""
    index = chosen.nonzero().flatten().tolist()
    rows = torch.tensor([i * N + j for i in index for j in range(N)], dtype=torch.long)
    pick = lambda t: t[rows.to(t.device)] if t is not None else None
    fields = {f.name: pick(getattr(sampled.rollout, f.name)) for f in dataclasses.fields(Rollout)}
    problems = [sampled.problems[i] for i in index]
    prompts = [sampled.prompts[i] for i in index]
    texts = [sampled.texts[row] for row in rows.tolist()]
    rewards = sampled.rewards[torch.tensor(index, dtype=torch.long)]
    return Sampled(problems, prompts, Rollout(**fields), texts, rewards)


def join_sampled(a: Sampled, b: Sampled, pad_id) -> Sampled:
    """Two Sampled batches as one, a's prompts first."""
    rollout = concat_rollouts([a.rollout, b.rollout], pad_id)
    rewards = torch.cat([a.rewards, b.rewards])
    return Sampled(
        a.problems + b.problems, a.prompts + b.prompts, rollout, a.texts + b.texts, rewards
    )
