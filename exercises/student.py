"""Your file: eight pieces of an RLVR trainer to write, each graded by `pytest exercises`.

Write each function below in place of its `raise NotImplementedError`, then run its grader:

    pytest exercises/test_ex2_grpo.py        # one exercise
    pytest exercises                         # all eight

The signatures are fixed (the graders call them as written); the docstrings give the equation,
the shapes and the edge cases the graders check. Plain PyTorch and the standard library are
enough; do not import passk's own modules (advantage.py, eval.py, ...): they hold the answers.
docs/paper.md maps every equation number below to the paper (Chen et al. 2025, arXiv 2508.10751).

    1  pass_at_k                  the unbiased pass@k estimator
    2  grpo_advantage             Pass@1: GRPO's group-normalised reward
    3  passk_full_advantage       Pass@k by full sampling (disjoint groups of k)
    4  passk_analytic_advantage   Pass@k in closed form (the limit over all C(N, k) groups)
    5  ppo_clip_loss              PPO-clip with clip-higher, token-mean aggregation
    6  kl_k3                      Schulman's k3 estimator of KL(policy || reference)
    7  maze_reward                the maze verifier: walk the moves from S to E
    8  logprob_backward           the backward of log_softmax(h W^T / T)[y] by hand (harder)
"""

import math

import torch


# ----------------------------------------------------------------------------- 1. evaluation


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): the probability that k samples drawn WITHOUT replacement
    from n samples, c of them correct, hold at least one correct sample.

        pass@k = 1 - C(n - c, k) / C(n, k)

    Edge cases: c = 0 gives 0.0; when n - c < k every draw of k holds a correct sample, so 1.0;
    k = 1 gives c / n. It must stay finite and accurate for n in the thousands (n = 3000, c = 7,
    k = 1000): C(3000, 1000) has 828 digits, far beyond a float (at most about 1.8e308), so never
    divide two binomials as floats. Hint: C(n - c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i).
    Assume 0 <= c <= n and 1 <= k <= n.
    """
    raise NotImplementedError("exercise 1: write pass_at_k")


# ----------------------------------------------------------------------------- 2-4. advantages


def grpo_advantage(rewards: torch.Tensor, *, k: int = 1, eps: float = 1e-6) -> torch.Tensor:
    """Pass@1 advantage (GRPO, the paper's Eq. 1-3), one row per prompt:

        A_i = (R_i - mean(R)) / (std(R) + eps)

    rewards: [G, N] float, G prompts with N responses each (any real values, not only 0/1).
    Returns [G, N]. mean and std are taken over each prompt's N responses (a row), and std is the
    POPULATION std (divide by N, not N - 1). A row whose rewards are all equal carries no signal:
    its advantages must be exactly 0.0, never NaN. k is unused: every estimator takes it, so that
    any of them can be called alike.
    """
    raise NotImplementedError("exercise 2: write grpo_advantage")


def passk_full_advantage(rewards: torch.Tensor, *, k: int, eps: float = 1e-6) -> torch.Tensor:
    """Pass@k by full sampling (the paper's Alg. 1).

    rewards: [G, N] of 0.0 / 1.0. For each prompt, cut its N responses IN ORDER into N // k disjoint
    groups of k: responses 0..k-1, then k..2k-1, and so on. A group's reward is the max of its
    members' rewards (Eq. 5: 1 if any is right). Normalise the group rewards over the prompt's
    N // k groups exactly as grpo_advantage does (population std, eps, exactly 0 when all are
    equal),
    and give each response its group's advantage. The N mod k leftover responses at the end belong
    to
    no group: their advantage is 0.0. Returns [G, N]. 1 <= k <= N; k = N is one group, so all zeros.
    """
    raise NotImplementedError("exercise 3: write passk_full_advantage")


def passk_analytic_advantage(rewards: torch.Tensor, *, k: int, eps: float = 1e-6) -> torch.Tensor:
    """Pass@k in closed form (the paper's Alg. 3, Eq. 11-15): take ALL C(N, k) groups of k of a
    prompt's
    N responses, normalise their group rewards (max) over all of them as grpo_advantage does, and
    give
    each response the mean advantage of the groups that hold it. No need to enumerate the groups:

    rewards: [G, N] of 0.0 / 1.0. For a prompt with N_neg wrong responses out of N:
        R_group = 1 - C(N_neg, k) / C(N, k)                         mean group reward (Eq. 11)
        sigma   = sqrt(R_group * (1 - R_group))                     its std (Eq. 12)
        A_pos   = (1 - R_group) / (sigma + eps)                     every correct response (Eq. 14)
        A_neg   = (1 - R_group - C(N_neg - 1, k - 1) / C(N - 1, k - 1)) / (sigma + eps)   every
        wrong one (Eq. 15)
    Returns [G, N]. Rows without signal give exactly 0.0, never NaN: every response right, every
    response wrong, fewer than k wrong (every group then holds a right one), and k = N.
    With k = 1 it equals grpo_advantage. math.comb(a, b) is 0 when b > a.
    Check by hand: N = 8, k = 4, N_pos = 3 gives A_pos = 0.27735 and A_neg = -0.16641.
    """
    raise NotImplementedError("exercise 4: write passk_analytic_advantage")


# ----------------------------------------------------------------------------- 5-6. the loss


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
) -> torch.Tensor:
    """PPO-clip with clip-higher (DAPO), averaged over tokens: the loss one mini-batch minimises.

    logp, old_logp: [R, L] log-probs of each response token under the current policy and under the
    policy that sampled it; advantages: [R], one per response, the same for all its tokens;
    mask: [R, L], 1.0 on response tokens, 0.0 on padding (whatever logp holds there must not count).
    Per token, with ratio r = exp(logp - old_logp):
        loss_t = -min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A)
    Token-mean: sum loss_t over every masked token of the mini-batch, divided by the number of
    masked
    tokens (NOT a mean per response first: a long response counts in proportion to its tokens).
    Returns a scalar tensor that gradients flow through (from logp; old_logp is a constant).
    """
    raise NotImplementedError("exercise 5: write ppo_clip_loss")


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(policy || reference), per token, for tokens sampled from the
    policy:

        k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1

    logp, ref_logp: [R, L] log-probs of the sampled tokens under the policy and the reference.
    Returns [R, L]. Every value is >= 0, 0 where the two agree, and its mean over tokens sampled
    from the policy is the true KL(policy || reference) (unbiased).
    """
    raise NotImplementedError("exercise 6: write kl_k3")


# ----------------------------------------------------------------------------- 7. the verifier


def maze_reward(response: str, maze: str) -> float:
    """1.0 if the moves of the LAST <answer>...</answer> in `response` walk from S to E, else 0.0.

    maze: rows joined by '\\n'; 'S' start, 'E' end, '*' wall, '.' free, e.g. "S.*\\n..E".
    Moves: 'L' (column - 1), 'R' (column + 1), 'U' (row - 1), 'D' (row + 1). Spaces and newlines
    between moves are ignored. Score 0.0 when: there is no complete <answer>...</answer>; a
    character
    other than L R U D or whitespace appears in the answer; a move leaves the grid or enters a wall;
    or the walk does not END on E (passing through E and walking on does not count).
    The response is model output: read it, never eval it.
    """
    raise NotImplementedError("exercise 7: write maze_reward")


# ----------------------------------------------------------------------------- 8. a backward by
# hand


def logprob_backward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    grad_logp: torch.Tensor,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backward of per-token log-probs, written by hand (what logprob.py's fused path does, in
    chunks).

    Forward: z = hidden @ weight.T / T   [M, V] logits;   logp[m] = log_softmax(z[m])[targets[m]]
    [M]. Given grad_logp [M] = dLoss/dlogp, return (grad_hidden [M, d], grad_weight [V, d]), the
    gradients of Loss = sum_m grad_logp[m] * logp[m]. Two steps:
      1. dLoss/dz [M, V]: the derivative of log_softmax(z)[y] with respect to z is onehot(y) -
      softmax(z);
         scale each row by its grad_logp.
      2. chain through z = hidden @ weight.T / T to hidden and to weight (mind the T).
    hidden [M, d] and weight [V, d] float (float64 in the grader), targets [M] int64 ids in [0, V),
    T > 0. Do not call autograd (no .backward(), no torch.autograd): the point is to write it
    yourself.
    """
    raise NotImplementedError("exercise 8: write logprob_backward")
