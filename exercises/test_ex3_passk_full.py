"""Grader for exercise 3, passk_full_advantage: a hand-worked row, a loop over Alg. 1 on random
rewards (leftovers included), k = 1 and k = N, rows without signal."""

import math

import torch

from grading import call, expect_tensor

EXERCISE = "passk_full_advantage"


def by_definition(rewards, k, eps=1e-6):
    """Alg. 1 row by row in plain Python: groups in order, max, population-std normalisation,
    leftovers 0."""
    out = []
    for row in rewards.tolist():
        n_groups = len(row) // k
        group_rewards = [max(row[j * k : (j + 1) * k]) for j in range(n_groups)]
        mean = sum(group_rewards) / n_groups
        std = math.sqrt(sum((x - mean) ** 2 for x in group_rewards) / n_groups)
        adv = [0.0 if std == 0 else (x - mean) / (std + eps) for x in group_rewards]
        out.append([a for a in adv for _ in range(k)] + [0.0] * (len(row) - n_groups * k))
    return torch.tensor(out, dtype=torch.float64)


def random_rewards(n_prompts, n, seed, p=0.3):
    return (torch.rand(n_prompts, n, generator=torch.Generator().manual_seed(seed)) < p).float()


def test_hand_worked_row(impl):
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
    # groups of 2 in order: (1,0) (0,0) (0,1) (0,0) -> group rewards 1 0 1 0 -> +1 -1 +1 -1
    expected = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0]])
    expect_tensor(
        call(impl.passk_full_advantage, rewards, k=2),
        expected,
        f"passk_full_advantage({rewards.tolist()}, k=2)",
        hint="a group's reward is the MAX of its members (Eq. 5); groups are consecutive responses",
    )


def test_groups_are_consecutive_responses(impl):
    rewards = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    # groups of 2 in order: (1,1) (0,0) (0,0) -> 1 0 0; strided groups (0,2,4), ... would differ
    expect_tensor(
        call(impl.passk_full_advantage, rewards, k=2),
        by_definition(rewards, 2),
        f"passk_full_advantage({rewards.tolist()}, k=2)",
        hint="group j holds responses j*k .. j*k + k - 1",
    )


def test_leftover_responses_get_zero(impl):
    # N = 7, k = 3: two groups and one leftover
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    expect_tensor(
        call(impl.passk_full_advantage, rewards, k=3),
        by_definition(rewards, 3),
        f"passk_full_advantage({rewards.tolist()}, k=3)",
        hint="N mod k = 1 response is left over: it is in no group and gets 0.0, even if it is "
        "right",
    )


def test_against_the_definition_on_random_rewards(impl):
    for seed, (n, k) in enumerate([(8, 2), (10, 3), (12, 4), (9, 5), (6, 1), (16, 4)]):
        rewards = random_rewards(20, n, seed)
        expect_tensor(
            call(impl.passk_full_advantage, rewards, k=k),
            by_definition(rewards, k),
            f"passk_full_advantage(20 prompts x {n} random 0/1 rewards, k={k})",
            hint="normalise the group rewards as grpo does: population std, + eps, 0 without "
            "spread",
        )


def test_rows_without_signal_and_k_equal_n(impl):
    rewards = torch.tensor([[1.0] * 8, [0.0] * 8, [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]])
    got = call(impl.passk_full_advantage, rewards, k=2)
    expect_tensor(
        got,
        torch.zeros(3, 8),
        f"passk_full_advantage({rewards.tolist()}, k=2)",
        hint="all groups succeed (or all fail): nothing to prefer, exactly 0.0, never NaN",
    )
    mixed = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    expect_tensor(
        call(impl.passk_full_advantage, mixed, k=6),
        torch.zeros(1, 6),
        f"passk_full_advantage({mixed.tolist()}, k=6)",
        hint="k = N is one group: no spread, all 0.0",
    )
