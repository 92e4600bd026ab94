"""Grader for exercise 6, kl_k3: hand values, >= 0 everywhere, and unbiased: its mean over a
categorical policy's samples, computed exactly, is KL(policy || reference)."""

import math

import torch

from grading import call, expect_float, expect_shape, expect_tensor

EXERCISE = "kl_k3"


def test_hand_values(impl):
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.1]], dtype=torch.float64))
    ref_logp = torch.log(torch.tensor([[0.25, 0.25, 0.2]], dtype=torch.float64))
    # exp(ref - logp) - (ref - logp) - 1: 0.5 + ln 2 - 1, then 0, then 2 - ln 2 - 1
    expected = torch.tensor([[0.5 + math.log(2) - 1, 0.0, 1 - math.log(2)]], dtype=torch.float64)
    expect_tensor(
        call(impl.kl_k3, logp, ref_logp),
        expected,
        "kl_k3(logp = log [0.5, 0.25, 0.1], ref_logp = log [0.25, 0.25, 0.2])",
        atol=1e-9,
        hint="k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1, per token",
    )


def test_never_negative_and_zero_where_they_agree(impl):
    generator = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 7, generator=generator, dtype=torch.float64) * 3
    ref_logp = -torch.rand(4, 7, generator=generator, dtype=torch.float64) * 3
    got = call(impl.kl_k3, logp, ref_logp)
    expect_shape(got, (4, 7), "kl_k3 on 4 x 7 random log-probs")
    lowest = got.min().item()
    assert lowest >= 0, (
        f"kl_k3 on 4 x 7 random log-probs gave {lowest:.4f}: every value must be >= 0\n"
        f"  hint: k3 = x - log x - 1 >= 0 with x = exp(ref - logp); logp - ref (k1) can be negative"
    )
    same = call(impl.kl_k3, logp, logp.clone())
    expect_tensor(
        same,
        torch.zeros(4, 7, dtype=torch.float64),
        "kl_k3(logp, logp): the policy is the reference",
        atol=1e-12,
    )


def test_unbiased_for_kl_policy_to_reference(impl):
    policy = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64)
    reference = torch.tensor([0.1, 0.3, 0.3, 0.2, 0.1], dtype=torch.float64)
    exact_kl = (policy * (policy / reference).log()).sum().item()  # KL(policy || reference)
    # each outcome once, as a [1, 5] row of 'tokens', weighted by how often the policy samples it
    per_outcome = call(impl.kl_k3, policy.log()[None], reference.log()[None])
    expect_shape(per_outcome, (1, 5), "kl_k3 on [1, 5] log-probs")
    expectation = (policy * per_outcome[0].double()).sum().item()
    expect_float(
        expectation,
        exact_kl,
        "the mean of kl_k3 over tokens sampled from a 5-outcome policy "
        "(computed exactly, each outcome weighted by its probability)",
        tol=1e-9,
        hint="k3's mean under the POLICY's samples is KL(policy || reference): the ratio inside "
        "exp is reference / policy",
    )


def test_shape(impl):
    logp = torch.full((3, 5), -1.0, dtype=torch.float64)
    expect_shape(
        call(impl.kl_k3, logp, logp - 0.5), (3, 5), "kl_k3 on [3, 5] log-probs: one value per token"
    )
