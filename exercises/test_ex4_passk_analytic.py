"""Grader for exercise 4, passk_analytic_advantage: the paper's hand-checked values, the mean over
every one of the C(N, k) groups enumerated, the rows without signal, k = 1 is grpo, zero sums."""

import itertools
import math

import pytest
import torch

from grading import call, expect_shape, expect_tensor

EXERCISE = "passk_analytic_advantage"


def by_enumeration(rewards, k, eps=1e-6):
    """Every one of the C(N, k) groups: max reward, normalised over all groups (population std +
    eps), and each response's advantage the mean over the groups that hold it."""
    n = rewards.shape[1]
    groups = list(itertools.combinations(range(n), k))
    out = []
    for row in rewards.tolist():
        group_rewards = [max(row[i] for i in g) for g in groups]
        mean = sum(group_rewards) / len(groups)
        std = math.sqrt(sum((x - mean) ** 2 for x in group_rewards) / len(groups))
        group_adv = [0.0 if std == 0 else (x - mean) / (std + eps) for x in group_rewards]
        out.append(
            [
                sum(a for g, a in zip(groups, group_adv) if i in g) / math.comb(n - 1, k - 1)
                for i in range(n)
            ]
        )
    return torch.tensor(out, dtype=torch.float64)


def rows_every_n_pos(n):
    """[n + 1, n]: row j has its first j responses right (every accuracy once)."""
    return (torch.arange(n) < torch.arange(n + 1)[:, None]).float()


@pytest.mark.parametrize(
    "n, k, n_pos, adv_pos, adv_neg", [(8, 4, 3, 0.27735, -0.16641), (32, 4, 8, 0.64764, -0.21588)]
)
def test_hand_checked_values(impl, n, k, n_pos, adv_pos, adv_neg):
    rewards = (torch.arange(n) < n_pos).float()[None]
    expected = torch.tensor([[adv_pos] * n_pos + [adv_neg] * (n - n_pos)])
    expect_tensor(
        call(impl.passk_analytic_advantage, rewards, k=k),
        expected,
        f"passk_analytic_advantage(N={n}, k={k}, {n_pos} right then {n - n_pos} wrong)",
        atol=1e-5,
        hint="Eq. 11: R_group = 1 - C(N_neg, k)/C(N, k); "
        "Eq. 15 subtracts C(N_neg - 1, k - 1)/C(N - 1, k - 1)",
    )


def test_equals_the_mean_over_all_groups(impl):
    for n in range(2, 10):
        rewards = rows_every_n_pos(n)
        for k in range(1, n + 1):
            expect_tensor(
                call(impl.passk_analytic_advantage, rewards, k=k),
                by_enumeration(rewards, k),
                f"passk_analytic_advantage(every accuracy 0..{n} of N={n}, k={k})",
                atol=1e-5,
                hint="it must equal full sampling averaged over all C(N, k) groups: a wrong "
                "response's group succeeds unless its other k - 1 members are all wrong too",
            )


def test_rows_without_signal_are_exactly_zero(impl):
    # the last: N_neg = 2 < k = 4
    rewards = torch.tensor([[1.0] * 8, [0.0] * 8, [1.0] * 6 + [0.0] * 2])
    got = call(impl.passk_analytic_advantage, rewards, k=4)
    expect_tensor(
        got,
        torch.zeros(3, 8),
        f"passk_analytic_advantage({rewards.tolist()}, k=4)",
        hint="all right, all wrong, or fewer than k wrong (every group holds a right answer): "
        "sigma is 0, the advantage exactly 0.0, never NaN",
    )
    mixed = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    expect_tensor(
        call(impl.passk_analytic_advantage, mixed, k=6),
        torch.zeros(1, 6),
        f"passk_analytic_advantage({mixed.tolist()}, k=6)",
        hint="k = N: the one group of all N always holds a right answer; no signal",
    )


def test_k_equal_1_is_grpo(impl):
    rewards = (torch.rand(16, 8, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    mean = rewards.mean(-1, keepdim=True)
    std = (rewards - mean).square().mean(-1, keepdim=True).sqrt()
    grpo = torch.where(std > 0, (rewards - mean) / (std + 1e-6), 0.0)
    expect_tensor(
        call(impl.passk_analytic_advantage, rewards, k=1),
        grpo,
        "passk_analytic_advantage(16 prompts x 8 random 0/1 rewards, k=1)",
        hint="a group of 1 is one response: Pass@1, grpo's advantage",
    )


def test_each_prompt_sums_to_zero(impl):
    rewards = rows_every_n_pos(16)
    got = call(impl.passk_analytic_advantage, rewards, k=4)
    expect_shape(got, rewards.shape, "passk_analytic_advantage(every accuracy of N=16, k=4)")
    expect_tensor(
        got.double().sum(-1),
        torch.zeros(17),
        "passk_analytic_advantage(every accuracy of N=16, k=4).sum(-1)",
        atol=1e-4,
        hint="N_pos A_pos + N_neg A_neg = 0 for every prompt",
    )


def test_shape_and_dtype(impl):
    rewards = rows_every_n_pos(8)
    got = call(impl.passk_analytic_advantage, rewards, k=2)
    expect_shape(got, rewards.shape, "passk_analytic_advantage(9 prompts x 8 rewards, k=2)")
    assert got.is_floating_point(), f"advantages must be floats, got {got.dtype}"
