"""Grader for exercise 2, grpo_advantage: hand values, the population std, rows without signal,
per-prompt normalisation, against a loop over the definition."""

import math

import torch

from grading import call, expect_shape, expect_tensor

EXERCISE = "grpo_advantage"


def by_definition(rewards, eps=1e-6):
    """Eq. 1-3 row by row, in plain Python."""
    out = []
    for row in rewards.tolist():
        mean = sum(row) / len(row)
        std = math.sqrt(sum((r - mean) ** 2 for r in row) / len(row))
        out.append([0.0 if std == 0 else (r - mean) / (std + eps) for r in row])
    return torch.tensor(out, dtype=torch.float64)


def test_hand_values(impl):
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # mean 0.25, population std sqrt(0.25 * 0.75) = 0.4330
    expected = torch.tensor(
        [[0.75 / 0.4330127, -0.25 / 0.4330127, -0.25 / 0.4330127, -0.25 / 0.4330127]]
    )
    expect_tensor(
        call(impl.grpo_advantage, rewards),
        expected,
        f"grpo_advantage({rewards.tolist()})",
        hint="Eq. 3 divides by the std: with it, one right response of 4 gets +1.732",
    )


def test_population_std(impl):
    rewards = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    expect_tensor(
        call(impl.grpo_advantage, rewards),
        by_definition(rewards),
        f"grpo_advantage({rewards.tolist()})",
        hint="Eq. 2 is the population std (divide by N): torch's .std() divides by N - 1 "
        "unless you pass correction=0",
    )


def test_rows_without_signal_are_exactly_zero(impl):
    rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    got = call(impl.grpo_advantage, rewards)
    expect_tensor(
        got,
        torch.zeros(3, 4),
        f"grpo_advantage({rewards.tolist()})",
        atol=0.0,
        hint="every response equal leaves nothing to prefer: exactly 0.0, never NaN",
    )


def test_right_beats_wrong_and_each_prompt_sums_to_zero(impl):
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]])
    got = call(impl.grpo_advantage, rewards)
    expect_shape(got, rewards.shape, f"grpo_advantage({rewards.tolist()})")
    expect_tensor(
        got.double().sum(-1),
        torch.zeros(2),
        f"grpo_advantage({rewards.tolist()}).sum(-1)",
        hint="subtracting each prompt's own mean makes its advantages sum to 0",
    )
    right, wrong = got[rewards == 1], got[rewards == 0]
    assert (right > 0).all() and (wrong < 0).all(), (
        f"grpo_advantage({rewards.tolist()}) gave {got.tolist()}: right responses need A > 0 and "
        "wrong ones A < 0"
    )


def test_each_prompt_is_normalised_on_its_own(impl):
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    expect_tensor(
        call(impl.grpo_advantage, rewards),
        by_definition(rewards),
        f"grpo_advantage({rewards.tolist()})",
        hint="mean and std over each row (dim=-1, keepdim=True), not over the whole batch",
    )


def test_continuous_rewards_against_the_definition(impl):
    generator = torch.Generator().manual_seed(0)
    rewards = torch.rand(6, 8, generator=generator, dtype=torch.float64) * 3 - 1
    expect_tensor(
        call(impl.grpo_advantage, rewards),
        by_definition(rewards),
        "grpo_advantage(6 prompts x 8 random real rewards)",
        atol=1e-6,
    )
