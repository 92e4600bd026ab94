"""Plausible wrong answers: for each exercise, implementations a student could well write, each with
one mistake (marked BUG). They keep the graders honest: a grader that cannot fail proves nothing,
and one that fails a stub that raises proves little. tests/test_exercises.py checks that every
grader of an exercise passes passk's implementation and that, for every mutant here, at least one
grader of its exercise fails it (and at least one passes it: the mutant is plausible, not broken
everywhere).

For a teacher these are also the common mistakes, each a question for the class: why is this wrong?

MUTANTS maps a name to (the exercise function it replaces, the function, what is wrong)."""

import math

import torch

MOVES = {"L": (0, -1), "R": (0, 1), "U": (-1, 0), "D": (1, 0)}


# ----------------------------------------------------------------------------- 1. pass_at_k


def pass_at_k_c_over_n(n, c, k):
    return c / n  # BUG: the fraction correct is pass@1, whatever k


def pass_at_k_with_replacement(n, c, k):
    return 1 - (1 - c / n) ** k  # BUG: draws with replacement: biased low for k > 1


def pass_at_k_off_by_one(n, c, k):
    if n - c < k:
        return 1.0
    # BUG: starts at n - c, one term too many
    return 1 - math.prod(1 - k / i for i in range(n - c, n + 1))


def pass_at_k_float_binomials(n, c, k):
    if n - c < k:
        return 1.0
    # BUG: C(3000, 1000) ~ 1e827 overflows
    return 1 - float(math.comb(n - c, k)) / float(math.comb(n, k))


# ----------------------------------------------------------------------------- 2. grpo_advantage


def _spread(rewards):
    # [G, 1]: the row has signal
    return rewards.amax(-1, keepdim=True) > rewards.amin(-1, keepdim=True)


def grpo_sample_std(rewards, *, k=1, eps=1e-6):
    centered = rewards - rewards.mean(-1, keepdim=True)
    # BUG: torch's default is the sample std (N - 1); Eq. 2 is the population std
    std = rewards.std(-1, keepdim=True)
    return torch.where(_spread(rewards), centered / (std + eps), 0.0)


def grpo_no_eps(rewards, *, k=1, eps=1e-6):
    centered = rewards - rewards.mean(-1, keepdim=True)
    # BUG: 0 / 0 = NaN on rows without spread
    return centered / centered.square().mean(-1, keepdim=True).sqrt()


def grpo_batch_normalised(rewards, *, k=1, eps=1e-6):
    # BUG: mean and std of the whole batch, not of each prompt's responses
    centered = rewards - rewards.mean()
    return torch.where(_spread(rewards), centered / (centered.square().mean().sqrt() + eps), 0.0)


def grpo_no_std(rewards, *, k=1, eps=1e-6):
    # BUG: Dr. GRPO's advantage, not Eq. 3 (no division by the std)
    return rewards - rewards.mean(-1, keepdim=True)


# -------------------------------------------------------------------------- 3. passk_full_advantage


def _normalise(x, eps):
    centered = x - x.mean(-1, keepdim=True)
    std = centered.square().mean(-1, keepdim=True).sqrt()
    return torch.where(_spread(x), centered / (std + eps), 0.0)


def passk_full_group_mean(rewards, *, k, eps=1e-6):
    g, n = rewards.shape
    groups = n // k
    # BUG: a group is right if ANY member is: max
    group_reward = rewards[:, : groups * k].reshape(g, groups, k).mean(-1)
    adv = torch.zeros_like(rewards)
    adv[:, : groups * k] = _normalise(group_reward, eps).repeat_interleave(k, dim=-1)
    return adv


def passk_full_strided(rewards, *, k, eps=1e-6):
    g, n = rewards.shape
    groups = n // k
    # BUG: group j is responses j, j + groups, ...: strided
    members = rewards[:, : groups * k].reshape(g, k, groups)
    adv = torch.zeros_like(rewards)
    adv[:, : groups * k] = _normalise(members.amax(1), eps).repeat(1, k)
    return adv


def passk_full_leftover_group(rewards, *, k, eps=1e-6):
    g, n = rewards.shape
    # BUG: the N mod k leftovers form a last, smaller group instead of getting 0
    starts = list(range(0, n, k))
    # [G, ceil(N / k)]
    group_reward = torch.stack([rewards[:, s : s + k].amax(-1) for s in starts], dim=-1)
    adv = _normalise(group_reward, eps)
    return torch.cat(
        [adv[:, j : j + 1].expand(g, len(range(s, min(s + k, n)))) for j, s in enumerate(starts)],
        dim=-1,
    )


def passk_full_sample_std(rewards, *, k, eps=1e-6):
    g, n = rewards.shape
    groups = n // k
    group_reward = rewards[:, : groups * k].reshape(g, groups, k).amax(-1)
    centered = group_reward - group_reward.mean(-1, keepdim=True)
    # BUG: sample std over the groups (N/k - 1), not the population std
    std = group_reward.std(-1, keepdim=True)
    adv = torch.zeros_like(rewards)
    adv[:, : groups * k] = torch.where(
        _spread(group_reward), centered / (std + eps), 0.0
    ).repeat_interleave(k, dim=-1)
    return adv


# ---------------------------------------------------------------------- 4. passk_analytic_advantage


def _closed_form(rewards, k, eps, mistake):
    """The closed form row by row with math.comb, as a student might write it, with one `mistake`
    switched in."""
    g, n = rewards.shape
    out = torch.zeros(g, n, dtype=torch.float64)
    for row in range(g):
        n_neg = int((rewards[row] == 0).sum())
        # BUG (counts_correct): C(N_pos, k)
        failing = n - n_neg if mistake == "counts_correct" else n_neg
        mean_group = torch.tensor(1 - math.comb(failing, k) / math.comb(n, k), dtype=torch.float64)
        sigma = (mean_group * (1 - mean_group)).sqrt()
        if mistake == "no_sqrt":
            sigma = mean_group * (1 - mean_group)  # BUG: the variance where the std goes
        # BUG (no_guard): 0 / 0 on rows without signal
        denominator = sigma if mistake == "no_guard" else sigma + eps
        if mistake == "off_by_one":
            # BUG: counts the response itself
            others_wrong = math.comb(n_neg, k - 1) / math.comb(n - 1, k - 1)
        else:
            others_wrong = math.comb(n_neg - 1, k - 1) / math.comb(n - 1, k - 1) if n_neg else 0.0
        adv_pos = (1 - mean_group) / denominator
        adv_neg = (1 - mean_group - others_wrong) / denominator
        if mistake == "neg_like_failed_group":
            adv_neg = (
                0 - mean_group
            ) / denominator  # BUG: as if a wrong response's groups all failed
        out[row] = torch.where(rewards[row] == 1, adv_pos, adv_neg)
    return out.to(rewards.dtype)


def passk_analytic_off_by_one(rewards, *, k, eps=1e-6):
    return _closed_form(rewards, k, eps, "off_by_one")


def passk_analytic_neg_like_failed_group(rewards, *, k, eps=1e-6):
    return _closed_form(rewards, k, eps, "neg_like_failed_group")


def passk_analytic_no_sqrt(rewards, *, k, eps=1e-6):
    return _closed_form(rewards, k, eps, "no_sqrt")


def passk_analytic_counts_correct(rewards, *, k, eps=1e-6):
    return _closed_form(rewards, k, eps, "counts_correct")


def passk_analytic_no_guard(rewards, *, k, eps=1e-6):
    return _closed_form(rewards, k, eps, "no_guard")


# ----------------------------------------------------------------------------- 5. ppo_clip_loss


def _token_mean(token_loss, mask):
    return (token_loss * mask).sum() / mask.sum()


def ppo_same_side_clip(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28):
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    # BUG: the upper clip for every token; for A < 0 the clip that binds is the lower one
    # (min of r A, clip(r) A)
    return _token_mean(-torch.minimum(ratio, torch.tensor(1 + eps_high)) * a, mask)


def ppo_swapped_eps(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28):
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    # BUG: eps_low and eps_high swapped: clip-lower
    clipped = ratio.clamp(1 - eps_high, 1 + eps_low) * a
    return _token_mean(-torch.minimum(ratio * a, clipped), mask)


def ppo_sequence_mean(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28):
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    token_loss = -torch.minimum(ratio * a, ratio.clamp(1 - eps_low, 1 + eps_high) * a)
    # BUG: a mean per response first: sequence-mean
    per_response = (token_loss * mask).sum(1) / mask.sum(1)
    return per_response.mean()


def ppo_optimistic(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28):
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    # BUG: max where PPO takes the min: the optimistic bound, which never stops a large step
    return _token_mean(-torch.maximum(ratio * a, ratio.clamp(1 - eps_low, 1 + eps_high) * a), mask)


def ppo_clip_only(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28):
    ratio = torch.exp(logp - old_logp)
    # BUG: the clipped term alone, without the min with the unclipped one
    return _token_mean(-ratio.clamp(1 - eps_low, 1 + eps_high) * advantages[:, None], mask)


def ppo_detached_ratio(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28):
    ratio = torch.exp(
        logp - old_logp
    ).detach()  # BUG: the ratio detached: the right value, but no gradient at all
    a = advantages[:, None]
    return _token_mean(-torch.minimum(ratio * a, ratio.clamp(1 - eps_low, 1 + eps_high) * a), mask)


def ppo_padding_counted(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28):
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    token_loss = -torch.minimum(ratio * a, ratio.clamp(1 - eps_low, 1 + eps_high) * a)
    return (
        token_loss * mask
    ).sum() / mask.numel()  # BUG: divides by every position, padding included


# ----------------------------------------------------------------------------- 6. kl_k3


def kl_k3_reversed(logp, ref_logp):
    # BUG: the ratio the other way up: not an unbiased estimate of KL(policy || ref)
    log_ratio = logp - ref_logp
    return torch.exp(log_ratio) - log_ratio - 1


def kl_k1(logp, ref_logp):
    # BUG: k1, unbiased but negative on some tokens: a noisy penalty that can reward
    return logp - ref_logp


def kl_k2(logp, ref_logp):
    return 0.5 * (logp - ref_logp) ** 2  # BUG: k2, >= 0 but biased


def kl_k3_no_minus_one(logp, ref_logp):
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio  # BUG: without the -1: 1 where the two agree


# ----------------------------------------------------------------------------- 7. maze_reward


def _walk(
    moves, maze, *, bounds=True, walls=True, stop_at_end=False, skip_unknown=False, must_end=True
):
    rows = maze.split("\n")
    row, col = next((r, line.index("S")) for r, line in enumerate(rows) if "S" in line)
    end = next((r, line.index("E")) for r, line in enumerate(rows) if "E" in line)
    for move in moves:
        if move.isspace():
            continue
        if move not in MOVES:
            if skip_unknown:
                continue
            return 0.0
        row, col = row + MOVES[move][0], col + MOVES[move][1]
        inside = 0 <= row < len(rows) and 0 <= col < len(rows[0])
        if bounds and not inside:
            return 0.0
        try:
            cell = rows[row][col]  # without the bounds check, -1 is the last row or column
        except IndexError:
            return 0.0
        if walls and cell == "*":
            return 0.0
        if stop_at_end and (row, col) == end:
            return 1.0
    return 1.0 if (row, col) == end or not must_end else 0.0


def _answer(response, last=True):
    close = response.rfind("</answer>") if last else response.find("</answer>")
    if close < 0:
        return None
    start = response.rfind("<answer>", 0, close)
    return None if start < 0 else response[start + len("<answer>") : close]


def maze_first_answer(response, maze):
    # BUG: the first <answer> counts; the model's last word is its answer
    moves = _answer(response, last=False)
    return 0.0 if moves is None else _walk(moves, maze)


def maze_ends_anywhere(response, maze):
    moves = _answer(response)
    # BUG: a walk that ends anywhere scores
    return 0.0 if moves is None else _walk(moves, maze, must_end=False)


def maze_through_walls(response, maze):
    moves = _answer(response)
    return 0.0 if moves is None else _walk(moves, maze, walls=False)  # BUG: walls are not checked


def maze_wraps_around(response, maze):
    moves = _answer(response)
    # BUG: no bounds check: row -1 is the last row
    return 0.0 if moves is None else _walk(moves, maze, bounds=False)


def maze_stops_at_end(response, maze):
    moves = _answer(response)
    # BUG: reaching E scores, whatever follows
    return 0.0 if moves is None else _walk(moves, maze, stop_at_end=True)


def maze_skips_unknown(response, maze):
    moves = _answer(response)
    # BUG: stray characters are skipped
    return 0.0 if moves is None else _walk(moves, maze, skip_unknown=True)


# ----------------------------------------------------------------------------- 8. logprob_backward


def _softmax_grad(
    hidden, weight, targets, grad_logp, temperature, *, tempered_p=True, sign=1.0, onehot=True
):
    z = hidden @ weight.T / (temperature if tempered_p else 1.0)  # [M, V]
    p = z.softmax(-1)
    dz = -p * grad_logp[:, None]
    if onehot:
        dz[torch.arange(len(targets)), targets] += grad_logp
    return sign * dz


def backward_missing_temperature(hidden, weight, targets, grad_logp, temperature=1.0):
    dz = _softmax_grad(hidden, weight, targets, grad_logp, temperature)
    return dz @ weight, dz.T @ hidden  # BUG: z = h W^T / T, so both gradients carry a 1/T


def backward_sign_flipped(hidden, weight, targets, grad_logp, temperature=1.0):
    # BUG: p - onehot: the loss's sign
    dz = _softmax_grad(hidden, weight, targets, grad_logp, temperature, sign=-1.0)
    return dz @ weight / temperature, dz.T @ hidden / temperature


def backward_untempered_softmax(hidden, weight, targets, grad_logp, temperature=1.0):
    # BUG: softmax of h W^T
    dz = _softmax_grad(hidden, weight, targets, grad_logp, temperature, tempered_p=False)
    return dz @ weight / temperature, dz.T @ hidden / temperature


def backward_no_onehot(hidden, weight, targets, grad_logp, temperature=1.0):
    # BUG: -p only, no onehot
    dz = _softmax_grad(hidden, weight, targets, grad_logp, temperature, onehot=False)
    return dz @ weight / temperature, dz.T @ hidden / temperature


def backward_weight_untempered(hidden, weight, targets, grad_logp, temperature=1.0):
    dz = _softmax_grad(hidden, weight, targets, grad_logp, temperature)
    return dz @ weight / temperature, dz.T @ hidden  # BUG: the 1/T on grad_hidden only


MUTANTS = {
    "pass_at_k_c_over_n": ("pass_at_k", pass_at_k_c_over_n, "the fraction correct, whatever k"),
    "pass_at_k_with_replacement": (
        "pass_at_k",
        pass_at_k_with_replacement,
        "1 - (1 - c/n)^k: with replacement",
    ),
    "pass_at_k_off_by_one": (
        "pass_at_k",
        pass_at_k_off_by_one,
        "one factor too many in the product",
    ),
    "pass_at_k_float_binomials": (
        "pass_at_k",
        pass_at_k_float_binomials,
        "binomials as floats overflow",
    ),
    "grpo_sample_std": ("grpo_advantage", grpo_sample_std, "sample std instead of population std"),
    "grpo_no_eps": (
        "grpo_advantage",
        grpo_no_eps,
        "NaN, not 0, on rows where all rewards are equal",
    ),
    "grpo_batch_normalised": (
        "grpo_advantage",
        grpo_batch_normalised,
        "normalised over the batch, not per prompt",
    ),
    "grpo_no_std": ("grpo_advantage", grpo_no_std, "no division by the std (Dr. GRPO)"),
    "passk_full_group_mean": (
        "passk_full_advantage",
        passk_full_group_mean,
        "group reward is the mean, not the max",
    ),
    "passk_full_strided": (
        "passk_full_advantage",
        passk_full_strided,
        "groups strided, not in order",
    ),
    "passk_full_leftover_group": (
        "passk_full_advantage",
        passk_full_leftover_group,
        "leftover responses form a group instead of getting 0",
    ),
    "passk_full_sample_std": (
        "passk_full_advantage",
        passk_full_sample_std,
        "sample std over the groups",
    ),
    "passk_analytic_off_by_one": (
        "passk_analytic_advantage",
        passk_analytic_off_by_one,
        "C(N_neg, k-1) instead of C(N_neg - 1, k - 1)",
    ),
    "passk_analytic_neg_like_failed_group": (
        "passk_analytic_advantage",
        passk_analytic_neg_like_failed_group,
        "a wrong response scored as an always-failing group",
    ),
    "passk_analytic_no_sqrt": (
        "passk_analytic_advantage",
        passk_analytic_no_sqrt,
        "the variance where the std goes",
    ),
    "passk_analytic_counts_correct": (
        "passk_analytic_advantage",
        passk_analytic_counts_correct,
        "C(N_pos, k) where Eq. 11 has C(N_neg, k)",
    ),
    "passk_analytic_no_guard": (
        "passk_analytic_advantage",
        passk_analytic_no_guard,
        "NaN on rows without signal",
    ),
    "ppo_same_side_clip": (
        "ppo_clip_loss",
        ppo_same_side_clip,
        "the clip on the wrong side for negative advantages",
    ),
    "ppo_swapped_eps": ("ppo_clip_loss", ppo_swapped_eps, "eps_low and eps_high swapped"),
    "ppo_sequence_mean": (
        "ppo_clip_loss",
        ppo_sequence_mean,
        "sequence-mean where token-mean is asked",
    ),
    "ppo_optimistic": ("ppo_clip_loss", ppo_optimistic, "max instead of min"),
    "ppo_clip_only": ("ppo_clip_loss", ppo_clip_only, "the clipped term without the min"),
    "ppo_detached_ratio": ("ppo_clip_loss", ppo_detached_ratio, "the ratio detached: no gradient"),
    "ppo_padding_counted": (
        "ppo_clip_loss",
        ppo_padding_counted,
        "padding counted in the denominator",
    ),
    "kl_k3_reversed": ("kl_k3", kl_k3_reversed, "the log-ratio the other way up"),
    "kl_k1": ("kl_k3", kl_k1, "k1: logp - ref"),
    "kl_k2": ("kl_k3", kl_k2, "k2: half the squared log-ratio"),
    "kl_k3_no_minus_one": ("kl_k3", kl_k3_no_minus_one, "the -1 missing"),
    "maze_first_answer": ("maze_reward", maze_first_answer, "the first <answer>, not the last"),
    "maze_ends_anywhere": ("maze_reward", maze_ends_anywhere, "a walk may end anywhere but E"),
    "maze_through_walls": ("maze_reward", maze_through_walls, "walls not checked"),
    "maze_wraps_around": (
        "maze_reward",
        maze_wraps_around,
        "no bounds check: negative indices wrap",
    ),
    "maze_stops_at_end": ("maze_reward", maze_stops_at_end, "reaching E scores, whatever follows"),
    "maze_skips_unknown": (
        "maze_reward",
        maze_skips_unknown,
        "unknown characters skipped, not refused",
    ),
    "backward_missing_temperature": (
        "logprob_backward",
        backward_missing_temperature,
        "the 1/T missing",
    ),
    "backward_sign_flipped": (
        "logprob_backward",
        backward_sign_flipped,
        "p - onehot: the sign flipped",
    ),
    "backward_untempered_softmax": (
        "logprob_backward",
        backward_untempered_softmax,
        "softmax without the 1/T",
    ),
    "backward_no_onehot": ("logprob_backward", backward_no_onehot, "the one-hot term missing"),
    "backward_weight_untempered": (
        "logprob_backward",
        backward_weight_untempered,
        "the 1/T on grad_hidden only",
    ),
}
