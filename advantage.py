"""Advantage estimators for RLVR: Pass@1, the Pass@k family, and Pass@k's advantage designs.

Each estimator maps rewards [G, N] (G prompts, N sampled responses each) to one advantage per
response, [G, N], which train.py broadcasts over the response's tokens. All are called alike,

    advantages = ESTIMATORS[name](rewards, k=k, **extra)

with k keyword-only and `extra` holding those of `prompt_entropy`, `generator`, `n_groups`, `beta`
and `normalize_std` that the function declares (train.py fills them from the config). Equation
numbers are Chen et al. 2025, "Pass@k Training for Adaptively Balancing Exploration and
Exploitation of Large Reasoning Models" (arXiv 2508.10751):

  grpo              Pass@1, Eq. 1-3: (r - mean) / (std + eps), population std.
  dr_grpo           Dr. GRPO (Liu et al. 2025, arXiv 2503.20783): r - mean, no division by std.
  rloo              REINFORCE leave-one-out (Ahmadian et al. 2024): r_i - mean of the other N - 1.
  passk_full        Pass@k by full sampling, Alg. 1: disjoint groups of k, group reward = max (Eq.
  5).
  passk_bootstrap   Pass@k by bootstrap sampling, Alg. 2 / Eq. 6: random groups of k.
  passk_analytic    Pass@k in closed form, Alg. 3 / Eq. 11-15: the limit over all C(N, k) groups.
  passk_combined    Eq. 18: (N_pos/N) * A_pass@k + (1 - N_pos/N) * A_pass@1.
  passk_exceeding   Eq. 17: f(N_pos) * A_pass@k with f = exceeding_weight (our reading, see there).
  entropy_adaptive  Sec. 4.2.3: Pass@1 for the higher-entropy half of the batch, Pass@k for the
  rest.
  pkpo              Walder & Karkhanis 2025 (arXiv 2505.15201), Eq. 33: unbiased pass@k / max@k
                    gradient weights with the "leave-one-out minus one" baseline, binary or
                    continuous.
  best_of_n         Tang et al. 2025 (arXiv 2503.19595), verl's grpo_passk: only the best response
  of a
                    group gets r_max - r_second_max (the pass@k objective at k = N); ignores k.
  rs_grpo           Risk-Sensitive GRPO (Jiang et al. 2025, arXiv 2509.24261): the advantage of the
                    exponential utility (1/beta) log E[exp(beta r)], between the mean and the max;
                    ignores k.
  maxrl             MaxRL (Tajwar et al. 2026, arXiv 2602.02710): (r_i - mean) / mean, 0 when the
                    mean is 0; the gradient of log pass@1 = sum_k (1/k) pass@k; 0/1 only; ignores k.

plus `eta` (Sec. 4.1: the sum of |advantages| over a prompt's responses) and `eta_curve`;
`python advantage.py` draws the paper's Fig. 9 (eta against rollout accuracy, N = 32) to
docs/eta.png.

Choices every estimator shares:
- Every normalisation, of rewards (Pass@1) or of group rewards (all Pass@k variants), is grpo's:
  (x - mean) / (std + eps), population std, the same eps, so passk_analytic at k = 1 is grpo and
  passk_analytic is exactly the mean over all C(N, k) groups of the grpo-normalised group rewards.
- Rows without signal (every response equal; for Pass@k also fewer than k wrong) give exactly 0.
- Work is done in float64 (float32 on MPS, which has none). The result is float64 for float64
  rewards and float32 for everything else: bfloat16 and float16 rewards give float32 advantages,
  because a 8-bit mantissa would round 0.27735 to 0.2773 and break the zero sum of a row.
- Pass@k estimators and maxrl need 0/1 rewards and say so; pkpo, best_of_n and rs_grpo also take
  continuous rewards.

Left out on purpose: value functions and GAE (outcome rewards only), reward shaping, the loss and
the k / estimator schedule (train.py), and gathering entropies across ranks (train.py does that
before calling entropy_adaptive, which stays a pure function of its arguments).
"""

import functools
import math
import numbers

import torch


# ----------------------------------------------------------------------------- checks and dtypes


def _work_dtype(device):
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _output(advantages, rewards):
    return advantages.to(torch.float64 if rewards.dtype == torch.float64 else torch.float32)


def _check(rewards, k, name, *, binary, eps=0.0):
    """Validate the shared contract and return the rewards in the working dtype."""
    if not isinstance(rewards, torch.Tensor):
        raise ValueError(
            f"{name}: rewards must be a torch.Tensor [G, N], got {type(rewards).__name__}"
        )
    if rewards.dim() != 2:
        raise ValueError(
            f"{name}: rewards must be 2-D [G prompts, N responses], got shape "
            f"{tuple(rewards.shape)}"
        )
    if rewards.is_complex():
        raise ValueError(f"{name}: rewards must be real, got {rewards.dtype}")
    n = rewards.shape[1]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{name}: k must be an integer, got {k!r}")
    if not 1 <= k <= n:
        raise ValueError(
            f"{name}: k must satisfy 1 <= k <= N (responses per prompt), got k={k}, N={n}"
        )
    if binary:
        is_binary = (rewards == 0) | (rewards == 1)
        if not is_binary.all():
            example = rewards[~is_binary][0].item()
            raise ValueError(
                f"{name} needs binary 0/1 rewards, got {example}; for continuous rewards use 'pkpo'"
            )
    elif not torch.isfinite(rewards).all():
        raise ValueError(f"{name}: rewards contain NaN or inf")
    if not eps >= 0:
        raise ValueError(f"{name}: eps must be >= 0, got {eps}")
    return rewards.to(_work_dtype(rewards.device))


def _normalise(x, eps):
    """Eq. 1-3 over the last dim: (x - mean) / (std + eps), population std; exactly 0 where all x
    are equal."""
    centered = x - x.mean(-1, keepdim=True)
    std = centered.square().mean(-1, keepdim=True).sqrt()  # population std (Eq. 2)
    # not aminmax: 16 ms vs 6 us on a busy 2-thread CPU
    spread = x.amax(-1, keepdim=True) > x.amin(-1, keepdim=True)
    return torch.where(spread, centered / (std + eps), 0.0)


def _log_binom(n, r, log_factorial):
    """log C(n, r) for an integer tensor n and an int r; -inf where C(n, r) = 0 (n < r or r < 0)."""
    if r < 0:
        return torch.full(n.shape, -math.inf, dtype=log_factorial.dtype, device=n.device)
    n_safe = n.clamp(min=r)
    value = log_factorial[n_safe] - log_factorial[r] - log_factorial[n_safe - r]
    return torch.where(n >= r, value, -math.inf)


def _log_factorials(n_max, device, dtype):
    """log m! for m = 0..n_max, computed once per call so no lgamma runs on a [G, N] tensor."""
    return torch.lgamma(torch.arange(n_max + 1, device=device, dtype=dtype) + 1)


# ----------------------------------------------------------------------------- Pass@1 family


def grpo(rewards, *, k=1, eps=1e-6):
    """Pass@1 advantage (Eq. 1-3): A_i = (R_i - mean R) / (std R + eps) per prompt. k is unused."""
    r = _check(rewards, k, "grpo", binary=False, eps=eps)
    return _output(_normalise(r, eps), rewards)


def dr_grpo(rewards, *, k=1):
    """Dr. GRPO: A_i = R_i - mean R, without GRPO's division by the std (its difficulty bias)."""
    r = _check(rewards, k, "dr_grpo", binary=False)
    spread = r.amax(-1, keepdim=True) > r.amin(-1, keepdim=True)
    return _output(torch.where(spread, r - r.mean(-1, keepdim=True), 0.0), rewards)


def _rloo(r):
    n = r.shape[1]
    if n == 1:  # no other response to compare with
        return torch.zeros_like(r)
    spread = r.amax(-1, keepdim=True) > r.amin(-1, keepdim=True)
    # R_i - (sum_j R_j - R_i) / (N - 1)  ==  N / (N - 1) * (R_i - mean R)
    return torch.where(spread, n / (n - 1) * (r - r.mean(-1, keepdim=True)), 0.0)


def rloo(rewards, *, k=1):
    """REINFORCE leave-one-out: A_i = R_i - mean of the other N - 1 rewards (0 when N = 1)."""
    return _output(_rloo(_check(rewards, k, "rloo", binary=False)), rewards)


# ----------------------------------------------------------------------------- Pass@k family


def passk_full(rewards, *, k, eps=1e-6):
    """Full sampling (Alg. 1): responses split in order into N // k disjoint groups of k.

    Group reward = max over the group (Eq. 5), normalised over the prompt's groups as grpo does;
    each response gets its group's advantage, the N mod k leftovers get 0.
    """
    r = _check(rewards, k, "passk_full", binary=True, eps=eps)
    n_prompts, n = r.shape
    n_groups = n // k
    group_reward = r[:, : n_groups * k].view(n_prompts, n_groups, k).amax(-1)  # [G, N // k]
    group_adv = _normalise(group_reward, eps)  # [G, N // k]
    adv = torch.zeros_like(r)
    adv[:, : n_groups * k] = group_adv.repeat_interleave(k, dim=-1)
    return _output(adv, rewards)


def _random_groups(n_prompts, n_groups, n, k, generator, device):
    """[n_prompts, n_groups, k] indices: every group k distinct of 0..n-1, uniformly and
    independently.

    Floyd's algorithm, vectorised over all groups: k draws, each O(1) per group. (The k largest of
    n random keys would be one line, but topk over 16k rows of 32 was 18x slower on CPU.)
    """
    taken = torch.zeros(n_prompts, n_groups, n, dtype=torch.bool, device=device)
    members = []
    for j in range(n - k, n):
        pick = torch.randint(0, j + 1, (n_prompts, n_groups, 1), generator=generator, device=device)
        # already in the group: take j, never drawn before
        pick = torch.where(taken.gather(-1, pick), j, pick)
        taken.scatter_(-1, pick, True)
        members.append(pick)
    return torch.cat(members, dim=-1)


def passk_bootstrap(rewards, *, k, n_groups=None, generator=None, eps=1e-6):
    """Bootstrap sampling (Alg. 2, Eq. 6): n_groups (default N) groups of k distinct responses.

    Each group is drawn independently and uniformly, per prompt; group reward = max, normalised
    over the prompt's drawn groups as grpo does; a response gets the mean advantage of the groups
    that contain it (0 if none). Converges to passk_analytic as n_groups grows; at small n_groups
    the per-draw normalisation biases it. `generator` must live on the rewards' device.
    """
    r = _check(rewards, k, "passk_bootstrap", binary=True, eps=eps)
    n_prompts, n = r.shape
    n_groups = n if n_groups is None else n_groups
    if isinstance(n_groups, bool) or not isinstance(n_groups, numbers.Integral) or n_groups < 1:
        raise ValueError(f"passk_bootstrap: n_groups must be a positive integer, got {n_groups!r}")
    if generator is not None and generator.device.type != r.device.type:
        raise ValueError(
            f"passk_bootstrap: generator is on {generator.device}, rewards on {r.device}"
        )
    members = _random_groups(n_prompts, n_groups, n, k, generator, r.device).view(
        n_prompts, n_groups * k
    )
    group_reward = r.gather(1, members).view(n_prompts, n_groups, k).amax(-1)  # [G, n_groups]
    group_adv = _normalise(group_reward, eps).repeat_interleave(k, dim=-1)  # [G, n_groups * k]
    total = torch.zeros_like(r).scatter_add_(1, members, group_adv)  # [G, N]
    count = torch.zeros_like(r).scatter_add_(1, members, torch.ones_like(group_adv))
    return _output(torch.where(count > 0, total / count.clamp(min=1), 0.0), rewards)


@functools.lru_cache(maxsize=64)
def _passk_table(n, k, eps, device, dtype):
    """Closed-form advantages (Eq. 11-15) of a correct and of a wrong response, for N_neg = 0..n.

    Tabulating over the n + 1 possible N_neg and indexing with each prompt's N_neg keeps the
    binomials (in log space, so n in the thousands is fine) off the [G, N] tensor. The table is
    cached per (N, k, eps, device, dtype), which stay fixed through a training phase: building it
    is ~40 tiny kernels, which at G = 512, N = 32 cost about as much as grpo itself.
    """
    log_factorial = _log_factorials(n, device, dtype)
    n_neg = torch.arange(n + 1, device=device)  # [N + 1]
    n_all = torch.tensor(n, device=device)
    # C(N_neg, k) / C(N, k): the share of the C(N, k) groups that hold no correct response
    all_wrong = torch.exp(_log_binom(n_neg, k, log_factorial) - _log_binom(n_all, k, log_factorial))
    mean_group = 1 - all_wrong  # Eq. 11
    sigma_group = torch.sqrt(mean_group * all_wrong)  # Eq. 12
    # C(N_neg - 1, k - 1) / C(N - 1, k - 1): the share of a wrong response's groups that are all
    # wrong
    q = torch.exp(
        _log_binom(n_neg - 1, k - 1, log_factorial) - _log_binom(n_all - 1, k - 1, log_factorial)
    )
    # 1 - R_group is all_wrong itself: as 1 - (1 - all_wrong) it cancels in float32 (MPS) when
    # all_wrong is tiny
    adv_pos = all_wrong / (sigma_group + eps)  # Eq. 14
    adv_neg = (all_wrong - q) / (sigma_group + eps)  # Eq. 15
    signal = (n_neg >= k) & (n_neg < n)  # some group fails and some group succeeds
    return torch.where(signal, adv_pos, 0.0), torch.where(signal, adv_neg, 0.0)


def _passk_analytic(r, k, eps):
    adv_pos, adv_neg = _passk_table(r.shape[1], k, eps, r.device, r.dtype)  # [N + 1] each
    n_neg = (r == 0).sum(-1, keepdim=True)  # [G, 1]
    return torch.where(r == 1, adv_pos[n_neg], adv_neg[n_neg])  # [G, N]


def passk_analytic(rewards, *, k, eps=1e-6):
    """Analytical Pass@k advantage (Alg. 3, Eq. 11-15), the limit of bootstrap over all C(N, k)
    groups.

    With N_neg wrong of N:  R_group = 1 - C(N_neg, k)/C(N, k),  sigma = sqrt(R_group (1 - R_group)),
    A_pos = (1 - R_group) / (sigma + eps),  A_neg = (1 - R_group - C(N_neg-1, k-1)/C(N-1, k-1)) /
    (sigma + eps). All-correct, all-wrong and N_neg < k rows give exactly 0.
    """
    r = _check(rewards, k, "passk_analytic", binary=True, eps=eps)
    return _output(_passk_analytic(r, k, eps), rewards)


def passk_combined(rewards, *, k, eps=1e-6):
    """Eq. 18: A = (N_pos/N) * A_pass@k + (1 - N_pos/N) * A_pass@1, Pass@k weighted up on easy
    prompts."""
    r = _check(rewards, k, "passk_combined", binary=True, eps=eps)
    accuracy = r.mean(-1, keepdim=True)  # N_pos / N, [G, 1]
    return _output(
        accuracy * _passk_analytic(r, k, eps) + (1 - accuracy) * _normalise(r, eps), rewards
    )


def exceeding_weight(n_pos):
    """f(N_pos) of Eq. 17 as we read it: 4 / (10 ln(N_pos + 0.5)).

    It falls from 0.99 at N_pos = 1 to 0.12 at N_pos = 32, moving eta's peak to the hardest
    prompts. The log's base is not legible in the paper; we take the natural log. To try another
    reading, pass passk_exceeding(..., f=your_function) (any tensor -> tensor function of N_pos).
    """
    return 4.0 / (10.0 * torch.log(n_pos + 0.5))


def passk_exceeding(rewards, *, k, eps=1e-6, f=exceeding_weight):
    """Exceeding Pass@k (Eq. 17): A' = f(N_pos) * A_pass@k (closed form), f = exceeding_weight."""
    r = _check(rewards, k, "passk_exceeding", binary=True, eps=eps)
    n_pos = r.sum(-1, keepdim=True)  # [G, 1]
    return _output(f(n_pos) * _passk_analytic(r, k, eps), rewards)


def entropy_adaptive(rewards, *, k, prompt_entropy, eps=1e-6):
    """Sec. 4.2.3: rank the batch's prompts by the mean entropy of their responses.

    The ceil(G/2) highest-entropy prompts get the Pass@1 (grpo) advantage, the rest passk_analytic
    with k. Ties go to the lower prompt index: of two prompts with equal entropy, the one earlier
    in the batch ranks higher. prompt_entropy is [G]; under several ranks, gather it first.
    """
    r = _check(rewards, k, "entropy_adaptive", binary=True, eps=eps)
    n_prompts = r.shape[0]
    if not isinstance(prompt_entropy, torch.Tensor) or prompt_entropy.shape != (n_prompts,):
        shape = (
            tuple(prompt_entropy.shape)
            if isinstance(prompt_entropy, torch.Tensor)
            else type(prompt_entropy).__name__
        )
        raise ValueError(
            f"entropy_adaptive: prompt_entropy must be a [G] = [{n_prompts}] tensor, got {shape}"
        )
    if not torch.isfinite(prompt_entropy).all():
        raise ValueError("entropy_adaptive: prompt_entropy contains NaN or inf")
    # a stable ascending sort of -entropy keeps equal entropies in index order
    ranking = torch.sort(
        -prompt_entropy.to(r.device, r.dtype), stable=True
    ).indices  # [G], highest first
    pass_at_1 = torch.zeros(n_prompts, dtype=torch.bool, device=r.device)
    pass_at_1[ranking[: (n_prompts + 1) // 2]] = True
    return _output(
        torch.where(pass_at_1[:, None], _normalise(r, eps), _passk_analytic(r, k, eps)), rewards
    )


def pkpo(rewards, *, k, baseline=True):
    """PKPO (Walder & Karkhanis 2025): unbiased max@k (pass@k for 0/1) weights, any real rewards.

    Output scale: we return N/k times the paper's weights, i.e. a mean over the C(N-1, k-1)
    k-subsets I that contain response i, in reward units and comparable across k:
      baseline=True  (Eq. 33, "loo-1"):  mean over I containing i of [max_I - max_(I without i)]
      baseline=False (the plain weight s_i):  mean over I containing i of max_I
    For 0/1 rewards s_i is 1 for a correct response and rho(N-1, c, k-1) for a wrong one; with
    the baseline a correct one gets C(N_neg, k-1)/C(N-1, k-1) and a wrong one 0 (a wrong response
    never raises a subset's max). The baselined weights are >= 0 and do not sum to 0. For k = 1
    the subset without i is empty, so we use the plain leave-one-out baseline there (= rloo).

    Sorting gives it in O(N log N). With x sorted ascending, a_p = C(p-1, k-1)/C(N-1, k-1) is the
    share of the subsets containing x_(p) in which all other members sit below position p. The
    lead of x_(p) over its subset's runner-up covers the gap x_(q) - x_(q-1) (q <= p) exactly in
    the subsets whose other members all sit below q, a share a_q, so
      loo-1:  w_p = sum_{q <= p} a_q (x_(q) - x_(q-1))    (a sum of terms >= 0: nothing cancels)
      plain:  s_p = a_p x_(p) + sum_{j > p} C(j-2, k-2)/C(N-1, k-1) x_(j)   (x_(j) is the max).
    """
    r = _check(rewards, k, "pkpo", binary=False)
    if k == 1 and baseline:
        return _output(_rloo(r), rewards)
    n = r.shape[1]
    sorted_r, order = r.sort(dim=-1)  # [G, N] ascending
    log_factorial = _log_factorials(n, r.device, r.dtype)
    position = torch.arange(1, n + 1, device=r.device)  # p = 1..N
    log_subsets = _log_binom(torch.tensor(n - 1, device=r.device), k - 1, log_factorial)
    top_share = torch.exp(_log_binom(position - 1, k - 1, log_factorial) - log_subsets)  # a_p, [N]
    if baseline:
        gaps = torch.diff(sorted_r, dim=-1, prepend=sorted_r[:, :1])  # x_(p) - x_(p-1), [G, N]
        weights = (top_share * gaps).cumsum(-1)
    else:
        above_share = torch.exp(_log_binom(position - 2, k - 2, log_factorial) - log_subsets)  # [N]
        from_above = (above_share * sorted_r).flip(-1).cumsum(-1).flip(-1)  # sum_{j >= p}, [G, N]
        weights = top_share * sorted_r + torch.nn.functional.pad(from_above[:, 1:], (0, 1))
    return _output(torch.empty_like(weights).scatter_(-1, order, weights), rewards)


# ----------------------------------------------------------------------------- methods from other
# papers


def best_of_n(rewards, *, k, normalize_std=False, eps=1e-6):
    """Best-of-N (Tang et al. 2025, arXiv 2503.19595; verl's `grpo_passk`): the pass@k objective at
    k = N.

    Only the best response of a prompt's group gets a nonzero advantage, r_max - r_second_max; every
    other response gets exactly 0, and a tie at the top gives a row of zeros (then no single
    response
    is what made the group succeed). For 0/1 rewards a prompt carries signal only when exactly one
    of
    its N responses is right. normalize_std divides by the group's Bessel-corrected std plus eps, as
    verl does by default (norm_adv_by_std_in_grpo); off by default here, which is the paper's
    estimator and equals pkpo(k=N) with its leave-one-out baseline. k is ignored (the group is all N
    responses).
    """
    r = _check(rewards, k, "best_of_n", binary=False, eps=eps)
    n = r.shape[1]
    if n < 2:
        raise ValueError("best_of_n needs at least 2 responses per prompt")
    top2 = r.topk(2, dim=-1)  # values, indices [G, 2]
    lead = top2.values[:, 0] - top2.values[:, 1]  # [G], 0 on a tie at the top
    if normalize_std:
        lead = lead / (r.std(dim=-1) + eps)  # Bessel-corrected, as torch.std
    adv = torch.zeros_like(r).scatter_(1, top2.indices[:, :1], lead[:, None])
    return _output(adv, rewards)


def rs_grpo(rewards, *, k, beta=2.0):
    """Risk-Sensitive GRPO (Jiang et al. 2025, arXiv 2509.24261): the advantage of the exponential
    utility.

    The objective (1/beta) log E[exp(beta r)] moves from the mean reward (beta -> 0) towards the max
    (beta -> +inf); its policy gradient, with the expectation estimated by the prompt's N responses,
    has
        A_i = (1/beta) * (exp(beta r_i) / mean_j exp(beta r_j) - 1).
    With z = beta (r - mean r) it is
        (expm1(z_i) - mean_j expm1(z_j)) / (beta (1 + mean_j expm1(z_j))),
    exact to rounding at any small beta (1e-15 too), where the log-sum-exp form cancelled. Rows
    whose |z| exceeds 50 take the shifted form, which cannot overflow,
        (exp(z_i - max z) / mean_j exp(z_j - max z) - 1) / beta.
    beta = 0 is its limit, r_i - mean (dr_grpo). The advantages of a prompt sum to 0; rows with
    every reward equal give exactly 0. k is ignored. The authors recommend beta = 2.
    """
    r = _check(rewards, k, "rs_grpo", binary=False)
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta):
        raise ValueError(f"rs_grpo: beta must be a finite number, got {beta!r}")
    spread = r.amax(-1, keepdim=True) > r.amin(-1, keepdim=True)
    centered = r - r.mean(-1, keepdim=True)  # [G, N]
    if beta == 0:
        return _output(torch.where(spread, centered, 0.0), rewards)
    z = beta * centered  # [G, N]
    grown = torch.expm1(z)  # [G, N], inf past |z| ~ 709
    mean_grown = grown.mean(-1, keepdim=True)  # [G, 1]
    small = (z.abs() <= 50).all(-1, keepdim=True)  # no overflow, no cancelling
    adv = (grown - mean_grown) / (beta * (1 + mean_grown))  # [G, N]
    if not bool(small.all()):  # 0/1 rewards with |beta| <= 50 never get here
        shifted = torch.exp(z - z.amax(-1, keepdim=True))  # [G, N], in (0, 1]
        adv = torch.where(small, adv, (shifted / shifted.mean(-1, keepdim=True) - 1) / beta)
    return _output(torch.where(spread, adv, 0.0), rewards)


def maxrl(rewards, *, k=1):
    """MaxRL (Tajwar et al. 2026, "Maximum Likelihood Reinforcement Learning", arXiv 2602.02710).

    For 0/1 rewards, with r_mean the prompt's mean reward (its N_pos / N),
        A_i = (r_i - r_mean) / r_mean,   and 0 for every response when r_mean = 0,
    so a correct response gets N / N_pos - 1 and a wrong one -1. MaxRL maximises log pass@1, and
    log p = -sum_{k>=1} (1 - p)^k / k gives grad log p = sum_{k>=1} (1/k) grad pass@k: a harmonic
    mixture of every Pass@k objective. What the estimator does exactly (tests/test_advantage.py
    enumerates it): per prompt,
        E[(1/N) sum_i A_i grad log pi(y_i)] = sum_{k=1}^{N-1} (1/k) grad pass@k,
    the mixture cut at N - 1 (the all-wrong rows' zeros drop the baseline's share there). Rows sum
    to 0; all-correct and all-wrong rows give exactly 0. Binary rewards only; k is ignored.
    """
    r = _check(rewards, k, "maxrl", binary=True)
    accuracy = r.mean(-1, keepdim=True)  # r_mean, [G, 1]
    solved = accuracy > 0
    return _output(
        torch.where(solved, (r - accuracy) / torch.where(solved, accuracy, 1.0), 0.0), rewards
    )


ESTIMATORS = {
    "grpo": grpo,
    "dr_grpo": dr_grpo,
    "rloo": rloo,
    "passk_full": passk_full,
    "passk_bootstrap": passk_bootstrap,
    "passk_analytic": passk_analytic,
    "passk_combined": passk_combined,
    "passk_exceeding": passk_exceeding,
    "entropy_adaptive": entropy_adaptive,
    "pkpo": pkpo,
    "best_of_n": best_of_n,
    "rs_grpo": rs_grpo,
    "maxrl": maxrl,
}


# ----------------------------------------------------------------------------- eta (Sec. 4.1, Fig.
# 9)


def eta(advantages):
    """eta = sum_i |A_i| over each prompt's responses, [G]: N_pos |A_pos| + N_neg |A_neg| for 0/1
    rewards."""
    return advantages.abs().sum(-1)


def eta_curve(estimator, *, n=32, k=1, **options):
    """eta of `estimator` for one prompt with N_pos = 0..n correct of n: (accuracy [n+1], eta
    [n+1])."""
    n_pos = torch.arange(n + 1)
    rewards = (torch.arange(n) < n_pos[:, None]).float()  # row j: j correct
    return n_pos / n, eta(estimator(rewards, k=k, **options))


def plot_eta(path, n=32):
    """The paper's Fig. 9: eta against rollout accuracy for Pass@1, Pass@k and the Sec. 4
    designs."""
    # no pyplot: the caller's backend (a notebook's inline one) stays as it is
    from matplotlib.figure import (
        Figure,
    )

    curves = [
        ("Pass@1 (grpo)", grpo, 1),
        ("Pass@4", passk_analytic, 4),
        ("Pass@8", passk_analytic, 8),
        ("Pass@16", passk_analytic, 16),
        ("combined, k=4 (Eq. 18)", passk_combined, 4),
        ("exceeding, k=4 (Eq. 17)", passk_exceeding, 4),
    ]
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    for label, estimator, k in [
        curve for curve in curves if curve[2] < n
    ]:  # k = N: no signal, a flat 0
        accuracy, values = eta_curve(estimator, n=n, k=k)
        ax.plot(accuracy.numpy(), values.numpy(), marker="o", markersize=3, label=label)
        print(
            f"{label:24s} peak eta {values.max():6.3f} at accuracy {accuracy[values.argmax()]:.3f}"
        )
    ax.set_xlabel(f"rollout accuracy N_pos / N  (N = {n})")
    ax.set_ylabel("eta = sum of |advantage| over the prompt")
    ax.set_title("Where each advantage puts its weight (after Chen et al. 2025, Fig. 9)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"saved {path}")


if __name__ == "__main__":
    from pathlib import Path

    plot_eta(Path(__file__).resolve().parent / "docs" / "eta.png")
