"""Grader for exercise 5, ppo_clip_loss: hand-worked tokens in every regime of the clip, the ratio-1
start, token-mean against sequence-mean, padding ignored, and the gradient (0 exactly where the clip
binds)."""

import math

import torch

from grading import call, expect_float, expect_tensor

EXERCISE = "ppo_clip_loss"

# One response per regime, one token each (ratio r, advantage A), eps_low 0.2, eps_high 0.28:
#   r = 1.1,  A = +1: inside the clip                       loss -1.1
#   r = 1.5,  A = +1: above 1.28, A > 0: clipped at 1.28     loss -1.28
#   r = 0.5,  A = +1: below 0.8 but A > 0: not clipped      loss -0.5
#   r = 0.5,  A = -1: below 0.8, A < 0: clipped at 0.8       loss +0.8
#   r = 1.5,  A = -1: above 1.28 but A < 0: not clipped     loss +1.5
#   r = 1.25, A = +1: above 1.2, below 1.28: clip-higher lets it through    loss -1.25
RATIOS = [1.1, 1.5, 0.5, 0.5, 1.5, 1.25]
ADVANTAGES = [1.0, 1.0, 1.0, -1.0, -1.0, 1.0]
LOSSES = [-1.1, -1.28, -0.5, 0.8, 1.5, -1.25]
CLIPPED = [False, True, False, True, False, False]


def one_token_rows(ratios, advantages):
    old_logp = torch.full((len(ratios), 1), -1.0, dtype=torch.float64)
    logp = old_logp + torch.log(torch.tensor(ratios, dtype=torch.float64))[:, None]
    advantages = torch.tensor(advantages, dtype=torch.float64)
    return logp, old_logp, advantages, torch.ones(len(ratios), 1, dtype=torch.float64)


def test_each_regime_of_the_clip(impl):
    for r, a, expected in zip(RATIOS, ADVANTAGES, LOSSES):
        logp, old_logp, adv, mask = one_token_rows([r], [a])
        got = call(impl.ppo_clip_loss, logp, old_logp, adv, mask)
        expect_float(
            got,
            expected,
            f"ppo_clip_loss on one token with ratio {r} and advantage {a:+}",
            tol=1e-6,
            hint="loss = -min(r A, clip(r, 1 - 0.2, 1 + 0.28) A): the min takes the pessimistic "
            "term, so the clip binds above 1.28 when A > 0 and below 0.8 when A < 0, never the "
            "other way",
        )


def test_token_mean_over_the_mini_batch(impl):
    logp, old_logp, adv, mask = one_token_rows(RATIOS, ADVANTAGES)
    got = call(impl.ppo_clip_loss, logp, old_logp, adv, mask)
    expect_float(
        got,
        sum(LOSSES) / len(LOSSES),
        "ppo_clip_loss on the six one-token responses of every regime",
        tol=1e-6,
    )


def test_ratio_one_gives_minus_the_token_weighted_advantage(impl):
    # before the first update logp == old_logp: the loss is minus the mean advantage over TOKENS
    old_logp = torch.tensor([[-0.5, -1.0, -2.0, -0.1], [-0.3, -0.7, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    got = call(impl.ppo_clip_loss, old_logp.clone(), old_logp, adv, mask)
    # 0.0: token-mean; a mean per response first would give +0.5
    expected = -(4 * 1.0 + 2 * -2.0) / 6
    expect_float(
        got,
        expected,
        "ppo_clip_loss with logp == old_logp, responses of 4 and 2 tokens, A = +1 and -2",
        tol=1e-9,
        hint="token-mean: sum over all 6 masked tokens / 6; not the mean of each response's mean",
    )


def test_padding_does_not_count(impl):
    old_logp = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    # junk on padding
    logp = old_logp + torch.tensor([[0.1, -0.1, 0.05], [0.2, 50.0, -50.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    adv = torch.tensor([0.5, -1.0], dtype=torch.float64)
    ratio = torch.exp(logp - old_logp)
    a = adv[:, None]
    token_loss = -torch.minimum(ratio * a, ratio.clamp(0.8, 1.28) * a)
    expected = (token_loss * mask).sum().item() / 4
    got = call(impl.ppo_clip_loss, logp, old_logp, adv, mask)
    expect_float(
        got,
        expected,
        "ppo_clip_loss with junk log-probs on padding (mask 0)",
        tol=1e-9,
        hint="multiply by the mask before summing and divide by the number of masked tokens, "
        "not by every position",
    )


def test_clip_higher_uses_both_eps(impl):
    logp, old_logp, adv, mask = one_token_rows([1.25, 0.75, 1.35], [1.0, -1.0, 1.0])
    got = call(impl.ppo_clip_loss, logp, old_logp, adv, mask, eps_low=0.2, eps_high=0.3)
    expect_float(
        got,
        (-1.25 + 0.8 - 1.3) / 3,
        "ppo_clip_loss(ratios 1.25, 0.75, 1.35; A +1, -1, +1; eps_low=0.2, eps_high=0.3)",
        tol=1e-6,
        hint="the lower clip is 1 - eps_low, the upper 1 + eps_high",
    )


def test_the_gradient_is_zero_exactly_where_the_clip_binds(impl):
    logp, old_logp, adv, mask = one_token_rows(RATIOS, ADVANTAGES)
    logp = logp.clone().requires_grad_(True)
    loss = call(impl.ppo_clip_loss, logp, old_logp, adv, mask)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0, (
        f"ppo_clip_loss must return a scalar tensor, got {type(loss).__name__} "
        f"{getattr(loss, 'shape', '')}"
    )
    assert loss.requires_grad, (
        "the loss has no gradient: was the ratio detached (or computed outside torch)?"
    )
    (grad,) = torch.autograd.grad(loss, logp)
    # d loss / d logp = -A r / (number of tokens) where the clip does not bind, 0 where it does
    expected = torch.tensor(
        [[0.0 if c else -a * r / len(RATIOS)] for r, a, c in zip(RATIOS, ADVANTAGES, CLIPPED)],
        dtype=torch.float64,
    )
    expect_tensor(
        grad,
        expected,
        "d ppo_clip_loss / d logp on the six one-token responses of every regime",
        atol=1e-9,
        hint="a clipped token gets no gradient; every other token -A r / (token count)",
    )
