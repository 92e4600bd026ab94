"""ppo.policy_loss against hand computations, one option at a time: PPO-clip with clip-higher,
dual-clip, truncated importance sampling, the k3 KL term, and the three aggregations."""

import math
from types import SimpleNamespace

import pytest
import torch

import ppo


def rl(**options):
    """An rl config section with the options policy_loss reads (all off by default)."""
    defaults = dict(
        eps_low=0.2, eps_high=0.28, dual_clip=0.0, tis_cap=0.0, kl_coef=0.0, loss_agg="token_mean"
    )
    return SimpleNamespace(**{**defaults, **options})


def ratios_logp(ratios):
    """(logp, old_logp) [1, T] whose per-token PPO ratio exp(logp - old_logp) is `ratios`."""
    old = torch.full((1, len(ratios)), -1.0, dtype=torch.float64)
    return old + torch.log(torch.tensor([ratios], dtype=torch.float64)), old


def test_ppo_clip_with_clip_higher_by_hand():
    logp, old = ratios_logp([0.5, 1.0, 1.2, 1.5])
    mask = torch.ones(1, 4, dtype=torch.float64)
    for A in (2.0, -2.0):
        loss, stats = ppo.policy_loss(
            logp, old, torch.tensor([[A]], dtype=torch.float64), mask, 4.0, rl()
        )
        if A > 0:  # min(r A, clip(r, 0.8, 1.28) A): clip binds above 1.28 only
            terms, clipped = [0.5 * A, 1.0 * A, 1.2 * A, 1.28 * A], [0, 0, 0, 1]
        else:  # A < 0: clip binds below 0.8
            terms, clipped = [0.8 * A, 1.0 * A, 1.2 * A, 1.5 * A], [1, 0, 0, 0]
        assert loss.item() == pytest.approx(-sum(terms) / 4)
        assert stats["clipped"].tolist() == [clipped]


def test_dual_clip_bounds_a_negative_advantage_token_loss_by_hand():
    logp, old = ratios_logp([1.0, 2.0, 5.0])
    mask = torch.ones(1, 3, dtype=torch.float64)
    A = torch.tensor([[-1.0]], dtype=torch.float64)
    loss, stats = ppo.policy_loss(logp, old, A, mask, 3.0, rl(dual_clip=3.0))
    # token losses -min(r A, clip(r) A) = r (for r >= 0.8) = 1, 2, 5; dual-clip caps them at -c A =
    # 3
    assert loss.item() == pytest.approx((1 + 2 + 3) / 3)
    assert stats["dual_clipped"].tolist() == [[0, 0, 1]]
    plain, _ = ppo.policy_loss(logp, old, A, mask, 3.0, rl())
    assert plain.item() == pytest.approx((1 + 2 + 5) / 3)  # the test can tell the option from none
    positive, _ = ppo.policy_loss(logp, old, -A, mask, 3.0, rl(dual_clip=3.0))
    assert positive.item() == pytest.approx(-(1 + 1.28 + 1.28) / 3)  # A > 0: dual-clip does nothing


def test_truncated_importance_sampling_weighs_by_the_capped_ratio_by_hand():
    logp, old = ratios_logp([1.0, 1.0, 1.0])
    sampler = old - torch.log(torch.tensor([[0.5, 1.5, 4.0]], dtype=torch.float64))  # old/sampler
    mask = torch.ones(1, 3, dtype=torch.float64)
    A = torch.tensor([[1.0]], dtype=torch.float64)
    loss, stats = ppo.policy_loss(logp, old, A, mask, 3.0, rl(tis_cap=2.0), sampler_logp=sampler)
    assert loss.item() == pytest.approx(-(0.5 + 1.5 + 2.0) / 3)
    assert stats["tis_capped"].tolist() == [[0, 0, 1]]


def test_the_k3_kl_term_by_hand():
    logp, old = ratios_logp([1.0, 1.0])
    ref = logp + torch.tensor([[0.0, math.log(2.0)]], dtype=torch.float64)  # ref/policy = 1, 2
    mask = torch.ones(1, 2, dtype=torch.float64)
    A = torch.tensor([[0.0]], dtype=torch.float64)  # only the KL term is left
    loss, stats = ppo.policy_loss(logp, old, A, mask, 2.0, rl(kl_coef=0.5), ref_logp=ref)
    k3 = [0.0, 2.0 - math.log(2.0) - 1.0]  # e^x - x - 1 at x = log(ref/policy)
    assert loss.item() == pytest.approx(0.5 * sum(k3) / 2)
    assert stats["kl"][0].tolist() == pytest.approx(k3)


def test_the_three_aggregations_by_hand():
    logp, old = ratios_logp([1.0, 1.0, 1.0])  # token loss -A everywhere
    logp, old = logp.expand(2, 3), old.expand(2, 3)
    A = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)  # 3 + 1 tokens
    token_mean, _ = ppo.policy_loss(logp, old, A, mask, 4.0, rl())
    assert token_mean.item() == pytest.approx(-(3 * 1 + 1 * 2) / 4)
    seq_mean, _ = ppo.policy_loss(logp, old, A, mask, 2, rl(loss_agg="seq_mean"))
    assert seq_mean.item() == pytest.approx(-(1 + 2) / 2)
    constant, _ = ppo.policy_loss(logp, old, A, mask, 2 * 8.0, rl(loss_agg="constant"))
    assert constant.item() == pytest.approx(-(3 * 1 + 1 * 2) / 16)  # rows x max_new_tokens = 16


def test_the_loss_gradient_is_the_policy_gradient_inside_the_clip_range():
    logp, old = ratios_logp([1.0, 1.1])
    logp = logp.clone().requires_grad_(True)
    A = torch.tensor([[3.0]], dtype=torch.float64)
    loss, stats = ppo.policy_loss(logp, old, A, torch.ones(1, 2, dtype=torch.float64), 2.0, rl())
    loss.backward()
    # d(-r A / 2) / d logp = -r A / 2 per token; approx_kl is k3 of the ratio
    assert logp.grad[0].tolist() == pytest.approx([-1.5, -1.65])
    assert stats["approx_kl"][0].tolist() == pytest.approx([0.0, 1.1 - 1 - math.log(1.1)])


def test_old_log_probs_of_some_rows_are_those_of_a_forward_over_all():
    """Stage 4 computes old log-probs only for the rows the update runs: each equals, bit for bit,
    what a forward over every row gives it (rows of whole prompts, whatever else is in the
    batch); the other rows stay 0."""
    from test_model import tiny_gpt

    from rollout import generate, sequences_batch
    from tokenizer import CharTokenizer

    tokenizer, N = CharTokenizer(), 4
    model = tiny_gpt()
    prompts = [tokenizer.encode_prompt(p) for p in ["ab", "a longer one", "x", "mid size"]]
    sampled = generate(model, prompts, n=N, max_new_tokens=8, seeds=[1, 2, 3, 4],
                       eos_ids=tokenizer.eos_ids, pad_id=tokenizer.pad_id,
                       valid_vocab=tokenizer.vocab_size)  # fmt: skip
    rows = [p for p in prompts for _ in range(N)]
    ids, mask = sequences_batch(rows, sampled.tokens, sampled.response_mask, tokenizer.pad_id)
    batch = ppo.StepBatch(ids, mask, sampled.response_mask, sampled.response_mask,
                          sampled.sampler_logprobs, tokenizer.vocab_size, True)  # fmt: skip
    cfg = SimpleNamespace(rl=SimpleNamespace(responses_per_prompt=N, micro_batch=0,
                                             temperature=1.0, logprob="fused"))  # fmt: skip
    every, _ = ppo.no_grad_logprobs(model, batch, cfg)
    batch.zero_advantage = torch.tensor([True, False, True, False]).repeat_interleave(N)
    some, _ = ppo.no_grad_logprobs(model, batch, cfg, rows=ppo.update_rows(batch))
    kept = ~batch.zero_advantage
    assert torch.equal(some[kept], every[kept]) and every[kept].abs().sum() > 0
    assert (some[~kept] == 0).all()
