"""Tests for advantage.py: every estimator against a brute-force or naive reference.

References: all C(N, k) groups enumerated with itertools.combinations (passk_analytic, pkpo),
loops over the definition (passk_full), Monte Carlo convergence (passk_bootstrap), the paper's
hand-checked values and identities (docs/paper.md), and the error contract.
"""

import inspect
import itertools
import math

import pytest
import torch

import advantage
from advantage import (
    ESTIMATORS,
    best_of_n,
    dr_grpo,
    entropy_adaptive,
    eta,
    eta_curve,
    exceeding_weight,
    grpo,
    maxrl,
    passk_analytic,
    passk_bootstrap,
    passk_combined,
    passk_exceeding,
    passk_full,
    pkpo,
    rloo,
    rs_grpo,
)

BINARY_ONLY = [
    "passk_full",
    "passk_bootstrap",
    "passk_analytic",
    "passk_combined",
    "passk_exceeding",
    "entropy_adaptive",
    "maxrl",
]


def rows_every_n_pos(n, seed=0):
    """[n + 1, n] binary rewards: row j has j correct, at random positions."""
    generator = torch.Generator().manual_seed(seed)
    rows = (torch.arange(n) < torch.arange(n + 1)[:, None]).float()
    return torch.stack([row[torch.randperm(n, generator=generator)] for row in rows])


def extra_for(fn, n_prompts):
    """The keyword arguments train.py passes: only those the estimator's signature declares."""
    available = {
        "prompt_entropy": torch.linspace(0.0, 1.0, n_prompts),
        "generator": torch.Generator().manual_seed(0),
        "n_groups": None,
    }
    return {
        name: value for name, value in available.items() if name in inspect.signature(fn).parameters
    }


def call(name, rewards, k):
    return ESTIMATORS[name](rewards, k=k, **extra_for(ESTIMATORS[name], rewards.shape[0]))


def brute_force_passk(rewards, k):
    """Mean over each response's groups of the grpo-normalised max rewards of ALL C(N, k) groups."""
    n = rewards.shape[1]
    groups = torch.tensor(list(itertools.combinations(range(n), k)))  # [C, k]
    member = torch.zeros(len(groups), n, dtype=torch.float64)
    member[torch.arange(len(groups))[:, None], groups] = 1.0  # [C, N]
    group_reward = rewards.double()[:, groups].amax(-1)  # [G, C]
    group_adv = grpo(group_reward).double()
    return group_adv @ member / member.sum(0)


# ----------------------------------------------------------------------------- passk_analytic


def test_analytic_equals_brute_force_over_all_groups():
    for n in range(1, 13):
        rewards = rows_every_n_pos(n, seed=n).double()
        for k in range(1, n + 1):
            torch.testing.assert_close(
                passk_analytic(rewards, k=k),
                brute_force_passk(rewards, k),
                atol=1e-9,
                rtol=1e-9,
                msg=f"N={n} k={k}",
            )


@pytest.mark.parametrize(
    "n, k, n_pos, adv_pos, adv_neg", [(8, 4, 3, 0.27735, -0.16641), (32, 4, 8, 0.64764, -0.21588)]
)
def test_analytic_hand_checked_values(n, k, n_pos, adv_pos, adv_neg):
    rewards = (torch.arange(n) < n_pos).float()[None]
    adv = passk_analytic(rewards, k=k)
    assert adv.dtype == torch.float32
    torch.testing.assert_close(adv[0, :n_pos], torch.full((n_pos,), adv_pos), atol=1e-5, rtol=0)
    torch.testing.assert_close(adv[0, n_pos:], torch.full((n - n_pos,), adv_neg), atol=1e-5, rtol=0)


def test_analytic_with_k1_is_grpo():
    rewards = (torch.rand(64, 16, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    torch.testing.assert_close(passk_analytic(rewards, k=1), grpo(rewards), atol=1e-6, rtol=0)


def test_analytic_equals_pkpo_identity():
    # docs/paper.md: A_i = (N/k) (s_i - mean s) / sigma_group; pkpo(baseline=False) returns (N/k) s
    for n, k in [(8, 4), (12, 3), (32, 4), (32, 16)]:
        rewards = rows_every_n_pos(n, seed=k).double()
        scaled_s = pkpo(rewards, k=k, baseline=False)
        mean_group = scaled_s.mean(-1, keepdim=True)  # mean of (N/k) s is R_group (Eq. 11)
        sigma_group = torch.sqrt(mean_group * (1 - mean_group))
        expected = (scaled_s - mean_group) / (sigma_group + 1e-6)
        no_signal = ((rewards == 0).sum(-1) < k) | (rewards.sum(-1) == 0)
        expected[no_signal] = 0.0
        torch.testing.assert_close(passk_analytic(rewards, k=k), expected, atol=1e-9, rtol=1e-9)


# ----------------------------------------------------------------------------- passk_full,
# passk_bootstrap


def naive_passk_full(rewards, k, eps=1e-6):
    out = torch.zeros(rewards.shape, dtype=torch.float64)
    for g, row in enumerate(rewards.tolist()):
        n_groups = len(row) // k
        group_rewards = [max(row[j * k : (j + 1) * k]) for j in range(n_groups)]
        mean = sum(group_rewards) / n_groups
        std = math.sqrt(sum((x - mean) ** 2 for x in group_rewards) / n_groups)
        for j, x in enumerate(group_rewards):
            for i in range(j * k, (j + 1) * k):
                out[g, i] = 0.0 if std == 0 else (x - mean) / (std + eps)
    return out


def test_full_follows_its_definition():
    generator = torch.Generator().manual_seed(2)
    for n, k in [(8, 2), (10, 3), (12, 4), (7, 7), (9, 5), (6, 1)]:
        rewards = (torch.rand(40, n, generator=generator) < 0.3).double()
        torch.testing.assert_close(
            passk_full(rewards, k=k), naive_passk_full(rewards, k), atol=1e-12, rtol=0
        )


@pytest.mark.parametrize("n, k", [(10, 2), (10, 4), (12, 3), (8, 6)])
def test_bootstrap_converges_to_analytic(n, k):
    # A response's estimate averages ~n_groups*k/N group advantages. A standardised group reward has
    # variance 1 over all groups, so at most N/k over the groups containing a given response: the
    # standard error is at most (N/k)/sqrt(n_groups). Measured max errors over all rows are ~1 such
    # unit at n_groups = 20000, so 4 units has margin and still fails a wrong estimator
    # (|advantages| here are 0.1 to 3).
    rewards = rows_every_n_pos(n, seed=3)
    exact = passk_analytic(rewards, k=k)
    unit = (n / k) / math.sqrt(20000)
    many = passk_bootstrap(rewards, k=k, n_groups=20000, generator=torch.Generator().manual_seed(4))
    assert (many - exact).abs().max() < 4 * unit
    few = passk_bootstrap(rewards, k=k, generator=torch.Generator().manual_seed(4))  # n_groups = N
    assert (few - exact).abs().max() > (many - exact).abs().max()


def test_random_groups_are_distinct_and_uniform():
    # N = 5, k = 2: 10 possible groups, 30000 draws, 3000 expected each with std sqrt(3000 * 0.9) =
    # 52;
    # 5 std (260) bounds every count. A biased draw (e.g. always including index 4) fails.
    groups = advantage._random_groups(
        3, 10000, 5, 2, torch.Generator().manual_seed(16), torch.device("cpu")
    )
    groups = groups.reshape(-1, 2).sort(-1).values
    assert (groups[:, 0] < groups[:, 1]).all()
    counts = torch.bincount(groups[:, 0] * 5 + groups[:, 1], minlength=25)
    counts = counts[counts > 0]
    assert len(counts) == 10 and (counts - 3000).abs().max() < 260
    full = advantage._random_groups(2, 7, 6, 6, None, torch.device("cpu")).sort(-1).values
    assert torch.equal(full, torch.arange(6).expand(2, 7, 6))


def test_bootstrap_draws_distinct_members_and_is_reproducible():
    rewards = rows_every_n_pos(10, seed=5)
    first = passk_bootstrap(rewards, k=3, generator=torch.Generator().manual_seed(6))
    again = passk_bootstrap(rewards, k=3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again)
    # with one group of k = N distinct responses every response is in it: no signal, exactly 0
    assert torch.equal(passk_bootstrap(rewards, k=10, n_groups=1), torch.zeros_like(rewards))
    # with one group of 2, the 8 responses outside it get exactly 0
    one_group = passk_bootstrap(
        rewards, k=2, n_groups=1, generator=torch.Generator().manual_seed(6)
    )
    assert ((one_group == 0).sum(-1) >= 8).all()


# ----------------------------------------------------------------------------- pkpo


def brute_force_pkpo(rewards, k, baseline):
    """Mean over the k-subsets I containing i of max_I (minus max of I without i, for loo-1)."""
    n = rewards.shape[1]
    out = torch.zeros(rewards.shape, dtype=torch.float64)
    for g, row in enumerate(rewards.double().tolist()):
        for i in range(n):
            values = []
            for subset in itertools.combinations(range(n), k):
                if i in subset:
                    rest = [row[j] for j in subset if j != i]
                    values.append(max(row[j] for j in subset) - (max(rest) if baseline else 0.0))
            out[g, i] = sum(values) / len(values)
    return out


def test_pkpo_continuous_equals_average_over_all_subsets():
    generator = torch.Generator().manual_seed(7)
    rewards = torch.rand(5, 8, generator=generator, dtype=torch.float64) * 4 - 1
    rewards[0, 3] = rewards[0, 5]  # a tie
    rewards[1] = 0.5  # a constant row
    for k in range(2, 9):
        for baseline in (True, False):
            torch.testing.assert_close(
                pkpo(rewards, k=k, baseline=baseline),
                brute_force_pkpo(rewards, k, baseline),
                atol=1e-12,
                rtol=0,
            )
    assert torch.equal(pkpo(rewards, k=4)[1], torch.zeros(8, dtype=torch.float64))


def test_pkpo_k1_uses_leave_one_out():
    rewards = torch.rand(6, 7, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(pkpo(rewards, k=1), rloo(rewards))
    torch.testing.assert_close(pkpo(rewards, k=1, baseline=False), rewards)


def test_pkpo_binary_matches_paper_closed_form():
    # PKPO's binary weights: s_i = k/N correct, (k/N) rho(N-1, c, k-1) wrong; rho(n, c, k) = 1 -
    # C(n-c, k)/C(n, k).
    # loo-1 subtracts (k/N) rho(N-1, c_without_i, k-1). pkpo returns N/k times the weights.
    def rho(n, c, k):
        return 1 - math.comb(n - c, k) / math.comb(n, k)

    for n, k in [(8, 4), (12, 3), (12, 12), (32, 8)]:
        rewards = rows_every_n_pos(n, seed=9).double()
        plain = torch.zeros_like(rewards)
        loo_1 = torch.zeros_like(rewards)
        for g, row in enumerate(rewards.tolist()):
            c = int(sum(row))
            for i, reward in enumerate(row):
                plain[g, i] = 1.0 if reward == 1 else rho(n - 1, c, k - 1)
                loo_1[g, i] = plain[g, i] - rho(n - 1, c - int(reward), k - 1)
        torch.testing.assert_close(pkpo(rewards, k=k, baseline=False), plain, atol=1e-12, rtol=0)
        torch.testing.assert_close(pkpo(rewards, k=k), loo_1, atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- Pass@1 family


def test_pass_at_1_family_against_definitions():
    rewards = torch.rand(16, 9, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    mean = rewards.mean(-1, keepdim=True)
    population_std = ((rewards - mean) ** 2).mean(-1, keepdim=True).sqrt()
    torch.testing.assert_close(grpo(rewards), (rewards - mean) / (population_std + 1e-6))
    torch.testing.assert_close(dr_grpo(rewards), rewards - mean)
    others_mean = (rewards.sum(-1, keepdim=True) - rewards) / 8
    torch.testing.assert_close(rloo(rewards), rewards - others_mean)


# ----------------------------------------------------------------------------- Sec. 4 designs


def test_combined_and_exceeding_hand_computed():
    # N = 8, k = 4, N_pos = 3. Pass@k: A_pos = 1/sqrt(13) = 0.277350, A_neg = -3/(5 sqrt(13)) =
    # -0.166410.
    # Pass@1: p = 3/8, sigma = sqrt(15)/8: A_pos = (5/8)/sigma = 1.290994, A_neg = -(3/8)/sigma =
    # -0.774597.
    # Eq. 18: 3/8 * 0.277350 + 5/8 * 1.290994 = 0.910877 ; 3/8 * -0.166410 + 5/8 * -0.774597 =
    # -0.546527
    # Eq. 17: f(3) = 4 / (10 ln 3.5) = 0.319294 ; 0.319294 * 0.277350 = 0.088556 ; * -0.166410 =
    # -0.053134
    rewards = torch.tensor([[1.0, 0, 1, 0, 0, 1, 0, 0]])
    correct = rewards[0] == 1
    combined = passk_combined(rewards, k=4)[0]
    torch.testing.assert_close(combined[correct], torch.full((3,), 0.910877), atol=2e-6, rtol=0)
    torch.testing.assert_close(combined[~correct], torch.full((5,), -0.546527), atol=2e-6, rtol=0)
    exceeding = passk_exceeding(rewards, k=4)[0]
    torch.testing.assert_close(exceeding[correct], torch.full((3,), 0.088556), atol=2e-6, rtol=0)
    torch.testing.assert_close(exceeding[~correct], torch.full((5,), -0.053134), atol=2e-6, rtol=0)


def test_exceeding_weight_is_swappable():
    rewards = rows_every_n_pos(8, seed=11)
    doubled = passk_exceeding(rewards, k=2, f=lambda n_pos: 2 * exceeding_weight(n_pos))
    torch.testing.assert_close(doubled, 2 * passk_exceeding(rewards, k=2))
    torch.testing.assert_close(
        passk_exceeding(rewards, k=2, f=torch.ones_like), passk_analytic(rewards, k=2)
    )


@pytest.mark.parametrize("n_prompts", [6, 7])
def test_entropy_adaptive_picks_the_high_entropy_half_with_ties_by_index(n_prompts):
    rewards = (torch.rand(n_prompts, 8, generator=torch.Generator().manual_seed(12)) < 0.5).float()
    rewards[:, 0], rewards[:, 1] = 1.0, 0.0  # every row has signal under both estimators
    entropy = torch.tensor([0.5, 0.9, 0.5, 0.1, 0.5, 0.2, 0.5][:n_prompts])
    # ranking: 1 (0.9), then the tied 0.5s in index order 0, 2, 4, (6), then 5 (0.2), 3 (0.1)
    pass_at_1 = {6: [1, 0, 2], 7: [1, 0, 2, 4]}[n_prompts]  # ceil(G/2) prompts
    adv = entropy_adaptive(rewards, k=4, prompt_entropy=entropy)
    expected = passk_analytic(rewards, k=4)
    expected[pass_at_1] = grpo(rewards)[pass_at_1]
    assert torch.equal(adv, expected)
    assert not torch.equal(grpo(rewards)[3], passk_analytic(rewards, k=4)[3])  # the halves differ


def test_entropy_adaptive_tie_break_on_a_large_batch():
    n_prompts = 1001
    generator = torch.Generator().manual_seed(15)
    entropy = torch.randint(0, 3, (n_prompts,), generator=generator).float()  # many ties
    rewards = torch.zeros(n_prompts, 8)
    rewards[:, 0] = 1.0  # N_pos = 1: grpo and Pass@4 differ on every row
    ranking = sorted(range(n_prompts), key=lambda i: (-entropy[i].item(), i))
    pass_at_1 = torch.zeros(n_prompts, dtype=torch.bool)
    pass_at_1[ranking[:501]] = True
    adv = entropy_adaptive(rewards, k=4, prompt_entropy=entropy)
    assert torch.equal(
        adv, torch.where(pass_at_1[:, None], grpo(rewards), passk_analytic(rewards, k=4))
    )


def test_eta_curves_peak_where_the_paper_says():
    accuracy, pass_at_1 = eta_curve(grpo, n=32, k=1)
    assert accuracy[pass_at_1.argmax()] == 0.5
    torch.testing.assert_close(pass_at_1[16], torch.tensor(32.0), atol=1e-3, rtol=0)  # 32 * |±1|
    accuracy, pass_at_4 = eta_curve(passk_analytic, n=32, k=4)
    assert accuracy[pass_at_4.argmax()] == 0.25
    assert (pass_at_4[29:] == 0).all()  # fewer than k wrong: easy prompts carry no signal
    advantages = torch.tensor([[0.5, -0.5, 2.0], [0.0, 0.0, -1.0]])  # η: a prompt's sum of |A|
    torch.testing.assert_close(eta(advantages), torch.tensor([3.0, 1.0]))
    _, exceeding = eta_curve(passk_exceeding, n=32, k=4)
    assert exceeding.argmax() == 1  # Eq. 17 moves the peak to the hardest prompts


# ----------------------------------------------------------------------------- shared contract


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_without_signal_give_exact_zeros(name, dtype):
    n, k = 8, 4
    # all correct, all wrong, N_neg = 3 < k
    rows = [
        torch.ones(n),
        torch.zeros(n),
        (torch.arange(n) < 5).float(),
    ]
    if name in (
        "grpo",
        "dr_grpo",
        "rloo",
        "pkpo",
        "passk_combined",
        "entropy_adaptive",
        "rs_grpo",
        "maxrl",
    ):
        rows = rows[:2]  # these do see signal when 0 < N_neg < k
    rewards = torch.stack(rows).to(dtype)
    adv = call(name, rewards, k)
    assert adv.dtype == torch.float32
    assert torch.equal(adv, torch.zeros_like(adv))


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "pkpo", "best_of_n", "rs_grpo"])
def test_constant_continuous_rows_give_exact_zeros(name):
    # mean([0.1] * 7) is not exactly 0.1 in floating point, so r - mean alone would leave ~1e-17 /
    # eps
    rewards = torch.tensor([[0.1] * 7, [0.7] * 7, [2.9] * 7, [1 / 3] * 7], dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        adv = call(name, rewards.to(dtype), 3)
        assert torch.equal(adv, torch.zeros_like(adv))


@pytest.mark.parametrize(
    "name",
    [
        "grpo",
        "dr_grpo",
        "rloo",
        "passk_full",
        "passk_analytic",
        "passk_combined",
        "passk_exceeding",
        "entropy_adaptive",
        "rs_grpo",
        "maxrl",
    ],
)
def test_advantages_of_a_row_sum_to_zero(name):
    rewards = torch.cat(
        [
            rows_every_n_pos(12, seed=13),
            torch.rand(3, 12, generator=torch.Generator().manual_seed(14)),
        ]
    )
    if name in BINARY_ONLY:
        rewards = rewards[:13]
    adv = call(name, rewards.double(), 3)
    torch.testing.assert_close(
        adv.sum(-1), torch.zeros(len(rewards), dtype=torch.float64), atol=1e-9, rtol=0
    )


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_bfloat16_and_large_n_are_finite(name):
    n = 1024
    n_pos = torch.tensor([0, 1, 2, 10, 300, 512, 1000, 1020, 1023, 1024])
    rewards = (torch.arange(n) < n_pos[:, None]).float()
    for k in (1, 4, 512, 1024):
        assert torch.isfinite(call(name, rewards, k)).all(), f"{name} k={k}"
    low_precision = call(name, rewards.bfloat16(), 4)  # 0/1 are exact in bfloat16
    assert low_precision.dtype == torch.float32
    assert torch.equal(low_precision, call(name, rewards, 4))


def test_analytic_at_large_n_matches_exact_binomials():
    n = 1024
    n_pos = [1, 10, 300, 1000]
    rewards = (torch.arange(n) < torch.tensor(n_pos)[:, None]).double()
    for k in (4, 64, 512):
        adv = passk_analytic(rewards, k=k)
        for row, correct in enumerate(n_pos):
            n_neg = n - correct
            if n_neg < k:
                assert (adv[row] == 0).all()
                continue
            all_wrong = math.comb(n_neg, k) / math.comb(n, k)  # Python integers: exact binomials
            sigma = math.sqrt(all_wrong * (1 - all_wrong))
            q = math.comb(n_neg - 1, k - 1) / math.comb(n - 1, k - 1)
            expected = torch.tensor(
                [all_wrong / (sigma + 1e-6), (all_wrong - q) / (sigma + 1e-6)], dtype=torch.float64
            )
            torch.testing.assert_close(
                adv[row, [0, -1]], expected, atol=1e-9, rtol=1e-7, msg=f"k={k} N_pos={correct}"
            )


def test_float64_in_float64_out():
    rewards = rows_every_n_pos(6).double()
    for name in ESTIMATORS:
        assert call(name, rewards, 2).dtype == torch.float64


@pytest.mark.parametrize("name", BINARY_ONLY)
def test_binary_estimators_reject_continuous_rewards(name):
    rewards = torch.tensor([[0.0, 1.0, 0.5, 1.0]])
    with pytest.raises(ValueError, match=f"{name} needs binary 0/1 rewards.*pkpo"):
        call(name, rewards, 2)
    with pytest.raises(ValueError, match="binary"):
        call(name, torch.tensor([[0.0, 1.0, float("nan"), 1.0]]), 2)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_bad_k_and_bad_shapes_raise(name):
    rewards = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    for k in (0, 5, -1):
        with pytest.raises(ValueError, match=f"k={k}, N=4"):
            call(name, rewards, k)
    with pytest.raises(ValueError, match="integer"):
        call(name, rewards, 2.0)
    call(name, rewards, 4)  # k = N is allowed
    for bad in (rewards[0], rewards[None]):
        with pytest.raises(ValueError, match="2-D"):
            call(name, bad, 1)


def test_other_bad_input_raises():
    with pytest.raises(ValueError, match="NaN or inf"):
        grpo(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(ValueError, match="torch.Tensor"):
        grpo([[0.0, 1.0]])
    with pytest.raises(ValueError, match="prompt_entropy"):
        entropy_adaptive(torch.tensor([[0.0, 1.0]]), k=1, prompt_entropy=torch.zeros(3))
    with pytest.raises(ValueError, match="n_groups"):
        passk_bootstrap(torch.tensor([[0.0, 1.0]]), k=1, n_groups=0)


def test_signatures_follow_the_contract():
    assert list(ESTIMATORS) == [
        "grpo",
        "dr_grpo",
        "rloo",
        "passk_full",
        "passk_bootstrap",
        "passk_analytic",
        "passk_combined",
        "passk_exceeding",
        "entropy_adaptive",
        "pkpo",
        "best_of_n",
        "rs_grpo",
        "maxrl",
    ]
    for name, fn in ESTIMATORS.items():
        assert getattr(advantage, name) is fn
        parameters = inspect.signature(fn).parameters
        assert parameters["k"].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert all(
            p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(parameters.values())[1:]
        ), name
    assert "prompt_entropy" in inspect.signature(entropy_adaptive).parameters
    assert {"generator", "n_groups"} <= set(inspect.signature(passk_bootstrap).parameters)


# ----------------------------------------------------------------------------- best_of_n and
# RS-GRPO


def test_best_of_n_gives_only_the_best_response_its_lead_and_every_other_exactly_zero():
    rewards = torch.tensor(
        [
            [0.2, 0.9, 0.5, 0.1],  # one best: its lead over the runner-up, 0.9 - 0.5
            [0.2, 0.9, 0.5, 0.9],  # a tie at the top: nobody alone made the group succeed
            [0.0, 1.0, 0.0, 0.0],  # binary, exactly one right: 1 for it
            [0.0, 1.0, 1.0, 0.0],  # binary, two right: a tie, zeros
            [0.0, 0.0, 0.0, 0.0],
        ],
        dtype=torch.float64,
    )
    expected = torch.tensor(
        [[0, 0.4, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        dtype=torch.float64,
    )
    adv = best_of_n(rewards, k=3)  # k is ignored
    torch.testing.assert_close(adv, expected, atol=1e-12, rtol=0)
    # the zeros are exact, not small: a port that forgot them trained every response towards the
    # best one's sign
    # and collapsed (EasyR1 #585)
    assert torch.equal(
        adv[expected == 0], torch.zeros(int((expected == 0).sum()), dtype=torch.float64)
    )


def test_best_of_n_equals_pkpo_at_k_equal_n_and_normalises_by_the_bessel_std_when_asked():
    generator = torch.Generator().manual_seed(5)
    continuous = torch.rand(20, 7, generator=generator, dtype=torch.float64)
    binary = rows_every_n_pos(7, seed=6).double()
    for rewards in (continuous, binary):
        torch.testing.assert_close(
            best_of_n(rewards, k=1),
            pkpo(rewards, k=rewards.shape[1], baseline=True),
            atol=1e-12,
            rtol=0,
        )
    rewards = torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    std = math.sqrt(((1 - 0.25) ** 2 + 3 * 0.25**2) / 3)  # Bessel: divide by N - 1
    torch.testing.assert_close(
        best_of_n(rewards, k=1, normalize_std=True),
        torch.tensor([[0.0, 1 / (std + 1e-6), 0.0, 0.0]], dtype=torch.float64),
    )


def test_rs_grpo_matches_its_formula_and_its_limits():
    # hand example, beta = 2, one right of four: mean exp(2 r) = (e^2 + 3) / 4
    m = (math.exp(2) + 3) / 4
    expected = [(math.exp(2) / m - 1) / 2] + [(1 / m - 1) / 2] * 3  # 0.922469, -0.307490 (x3)
    torch.testing.assert_close(
        rs_grpo(torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64), k=1, beta=2.0),
        torch.tensor([expected], dtype=torch.float64),
        atol=1e-12,
        rtol=0,
    )
    assert abs(expected[0] - 0.922469) < 1e-6 and abs(expected[1] + 0.307490) < 1e-6
    rewards = torch.rand(6, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for beta in (
        -3.0,
        0.5,
        2.0,
        8.0,
    ):  # (1/beta)(exp(beta r_i) / mean_j exp(beta r_j) - 1), computed directly
        direct = (
            torch.exp(beta * rewards) / torch.exp(beta * rewards).mean(-1, keepdim=True) - 1
        ) / beta
        torch.testing.assert_close(rs_grpo(rewards, k=1, beta=beta), direct, atol=1e-12, rtol=1e-10)
    # beta -> 0: the mean
    torch.testing.assert_close(rs_grpo(rewards, k=1, beta=0.0), dr_grpo(rewards, k=1))
    torch.testing.assert_close(
        rs_grpo(rewards, k=1, beta=1e-7), dr_grpo(rewards, k=1), atol=1e-6, rtol=0
    )
    assert torch.isfinite(
        rs_grpo(torch.tensor([[0.0, 1.0]] * 2), k=1, beta=200.0)
    ).all()  # stable at large beta
    with pytest.raises(ValueError, match="beta"):
        rs_grpo(rewards, k=1, beta=float("inf"))


def test_the_closed_form_table_keeps_its_precision_in_float32():
    """At N = 32, k = 16, N_neg = 16 the share of all-wrong groups is ~1.7e-9: written as 1 - (1 -
    share) it
    cancels in float32 (the working dtype on MPS) and the correct responses' advantage came out
    0."""
    device = torch.device("cpu")
    pos64, neg64 = advantage._passk_table(32, 16, 1e-6, device, torch.float64)
    pos32, neg32 = advantage._passk_table(32, 16, 1e-6, device, torch.float32)
    assert pos64[16] > 3.9e-5
    # float32 log-binomials: ~1e-4 relative
    torch.testing.assert_close(pos32.double(), pos64, rtol=5e-4, atol=1e-9)
    torch.testing.assert_close(neg32.double(), neg64, rtol=5e-4, atol=1e-9)
    n_neg = torch.arange(33)
    row_sums = (32 - n_neg) * pos32.double() + n_neg * neg32.double()
    row_mass = (32 - n_neg) * pos32.double().abs() + n_neg * neg32.double().abs()
    assert (row_sums.abs() <= 1e-4 * row_mass).all(), row_sums
    assert abs(row_sums[16]) < 1e-7  # it was -1.3e-3


def exact_rs_grpo(row, beta):
    """(1/beta)(exp(beta r_i) / mean_j exp(beta r_j) - 1) with 60 significant digits (mpmath)."""
    import mpmath

    with mpmath.workdps(60):
        grown = [mpmath.exp(mpmath.mpf(beta) * mpmath.mpf(x)) for x in row]
        mean = sum(grown) / len(grown)
        return [float((g / mean - 1) / mpmath.mpf(beta)) for g in grown]


@pytest.mark.parametrize("beta", [1e-15, 1e-12, 1e-6, 2.0, -3.0, 60.0, 1000.0])
def test_rs_grpo_is_exact_at_tiny_and_huge_beta(beta):
    """The log-sum-exp form cancelled at tiny beta: relative error 2.3e-3 at 1e-12, 2.5 at 1e-15,
    rows no longer summing to 0 (half their mass at 1e-15). Working from r - mean(r) with expm1 is
    exact to rounding."""
    rows = [
        [1.0, 0.0, 0.0, 0.0],
        [0.3, 0.9, 0.1, 0.55, 0.0, 1.0],
        [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0],
    ]
    for row in rows:
        adv = rs_grpo(torch.tensor([row], dtype=torch.float64), k=1, beta=beta)[0]
        expected = torch.tensor(exact_rs_grpo(row, beta), dtype=torch.float64)
        torch.testing.assert_close(adv, expected, rtol=1e-13, atol=1e-300)
        assert abs(adv.sum()) <= 1e-15 * adv.abs().sum()


# ----------------------------------------------------------------------------- MaxRL


def test_maxrl_hand_examples():
    rewards = torch.tensor(
        [
            [1.0, 0, 0, 0],  # mean 1/4: right 3, wrong -1
            [1.0, 1, 0, 1],  # mean 3/4: right 1/3, wrong -1
            [0.0, 0, 0, 0],  # mean 0: no signal, exact zeros
            [1.0, 1, 1, 1],
        ],
        dtype=torch.float64,
    )
    expected = torch.tensor(
        [[3.0, -1, -1, -1], [1 / 3, 1 / 3, -1, 1 / 3], [0, 0, 0, 0], [0, 0, 0, 0]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(maxrl(rewards, k=3), expected, atol=1e-15, rtol=0)  # k is ignored
    torch.testing.assert_close(maxrl(rewards), maxrl(rewards, k=1))
    with pytest.raises(ValueError, match="maxrl needs binary 0/1 rewards, got 0.5"):
        maxrl(torch.tensor([[0.0, 0.5]]))


def expected_update(estimator, logits, correct, n):
    """E[(1/N) sum_i A_i grad_logits log pi(y_i)] for one prompt with a softmax policy over
    len(logits) answers, `correct` the right ones: all V^N ordered samples of N enumerated."""
    probs = torch.softmax(logits, -1)  # [V]
    score = torch.eye(len(logits), dtype=torch.float64) - probs  # row y: grad log pi(y), [V, V]
    samples = torch.tensor(list(itertools.product(range(len(logits)), repeat=n)))  # [V^N, N]
    weight = probs[samples].prod(-1)  # P(sample), [V^N]
    rewards = correct[samples].double()  # [V^N, N]
    adv = estimator(rewards, k=1)  # [V^N, N]
    per_sample = (adv[..., None] * score[samples]).mean(1)  # [V^N, V]
    return weight @ per_sample  # [V]


def harmonic_passk_gradient(logits, correct, terms):
    """grad_logits of sum_{k=1}^{terms} (1/k) pass@k with pass@k = 1 - (1 - p)^k, p = pi(correct),
    by autograd."""
    if terms == 0:
        return torch.zeros_like(logits)
    logits = logits.clone().requires_grad_(True)
    p = torch.softmax(logits, -1)[correct].sum()
    objective = sum((1 - (1 - p) ** k) / k for k in range(1, terms + 1))
    return torch.autograd.grad(objective, logits)[0]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_maxrl_expected_update_is_the_harmonic_sum_of_passk_gradients_up_to_n_minus_1(n):
    """Exact identity (derivation in maxrl's docstring): given K >= 1 right of N, the right samples
    are drawn from pi restricted to the right answers, so E[(N/K) sum_right grad log pi]
    = N P(K >= 1) grad p / p; the baseline's -sum_i grad log pi, applied only when K >= 1, has mean
    -N (1 - p)^(N-1) grad p (the score's mean is 0, and the all-wrong samples it skips, probability
    (1 - p)^N, have mean score -N grad p / (1 - p)). Divided by N:
        ((1 - (1 - p)^N) / p - (1 - p)^(N-1)) grad p = sum_{k=1}^{N-1} (1 - p)^(k-1) grad p
                                                     = sum_{k=1}^{N-1} (1/k) grad pass@k.
    As N grows it tends to grad log p, MaxRL's objective."""
    correct = torch.tensor([True, False, True, False])
    for logits in (torch.tensor([0.3, -0.2, -1.5, 0.8]), torch.tensor([-2.0, 1.0, -0.5, 0.4])):
        logits = logits.double()
        update = expected_update(maxrl, logits, correct, n)
        torch.testing.assert_close(
            update, harmonic_passk_gradient(logits, correct, n - 1), atol=1e-14, rtol=1e-12
        )
        if n >= 2:  # the identity is sharp: cut at N (or the Pass@1 estimator) it does not hold
            assert (update - harmonic_passk_gradient(logits, correct, n)).abs().max() > 1e-3
            assert (update - expected_update(dr_grpo, logits, correct, n)).abs().max() > 1e-3
