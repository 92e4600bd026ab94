"""The study's design: its sizes, its arms, the paper's claims it tests, each run's train.py args.

experiments.py runs what this file describes. Arms differ only in the advantage estimator (and
its schedule): pass1 is GRPO (Chen et al. 2025, arXiv 2508.10751, Eq. 1-3); the Pass@k arms are
Alg. 1 (full sampling), Alg. 2 (bootstrap) and Alg. 3 (closed form, Eq. 11-15), Pass@k then
Pass@1 (Table 2), combined (Eq. 18) and entropy-adaptive (Sec. 4.2.3); best_of_n, rs_grpo and
maxrl are the published alternatives. CLAIMS are the paper's claims as paired comparisons of
arms, judged by study_report.judge.
"""

import json

import eval as evaluation

# ----------------------------------------------------------------------------- the study's knobs
# Sizing, measured (each stored result records its CPU and wall seconds): on configs/maze.yaml at
# issue 24's settings (B = 64 prompts, N = 16, 60 RL steps) one run takes 2.7-5.1 single-thread CPU
# minutes to train (median 3.5; entropy_adaptive the most: it runs the old log-prob forward over
# every row) and 0.2 to evaluate; the warm start (300 SFT steps) about 3 min once, cached. The
# default sweep, 11 arms x 6 seeds = 66 runs, is about 245 CPU minutes: about 2 h at 2 jobs on an
# idle 2-core machine (before issue 24: 9.6 CPU minutes a run, 5.5 h).

# N: responses per prompt in every arm (k = 4 needs >= 4 wrong of 16 for any signal)
N_RESPONSES = 16
K = 4  # k of the Pass@k arms (the paper's smallest)
EXTENDED_KS = (2, 8)  # claim 5's other k, closed form
STEPS = 60  # RL steps per run: fixed, never a time budget
SEEDS = 6  # seeds per arm
JOBS = 2  # runs side by side, one CPU thread each
EVAL_PROBLEMS = 100  # held-out mazes per set (training sizes; one size larger)
EVAL_SAMPLES = 32  # samples per held-out maze (the paper's 32): pass@k for k = 1..32
EVAL_TEMPERATURE = 1.0  # the paper's evaluation setting
EVAL_TOP_P = 0.95
TRAIN_EVAL_EVERY = 10  # in-training held-out pass@1 (train.py's eval) every this many steps
TRAIN_EVAL_PROBLEMS = 64
TRAIN_EVAL_SAMPLES = 4
CHECKPOINT_EVERY = 10  # RL steps between checkpoints: what an interrupted run loses at most

CORE_ARMS = (
    "pass1",
    "passk_full",
    "passk_bootstrap",
    "passk_analytic",
    "passk_then_pass1",
    "best_of_n",
)
CLAIM_ARMS = (
    *(f"passk_analytic_k{k}" for k in EXTENDED_KS),
    "passk_combined",
    "entropy_adaptive",
    "maxrl",
)
EXTENDED_ARMS = ("rs_grpo",)
ARM_DOCS = {
    "pass1": "Pass@1 training: grpo (Eq. 1-3)",
    "passk_full": f"Pass@{K}, full sampling (Alg. 1)",
    "passk_bootstrap": f"Pass@{K}, bootstrap sampling, N groups (Alg. 2, Eq. 6)",
    "passk_analytic": f"Pass@{K}, closed form (Alg. 3, Eq. 11-15)",
    "passk_then_pass1": f"Pass@{K} closed form for the first half of the steps, then Pass@1 (Table "
    "2)",
    "passk_combined": f"Pass@{K} combined with Pass@1 (Eq. 18)",
    "best_of_n": "Best-of-N (Tang et al. 2025; verl's grpo_passk): only a group's best response, "
    "r_max - r_second",
    "rs_grpo": "Risk-Sensitive GRPO (Jiang et al. 2025), beta = 2: (1/beta) log E[exp(beta r)]",
    "maxrl": "MaxRL (Tajwar et al. 2026): (r_i - mean) / mean, the gradient of log pass@1 "
    "= sum_k (1/k) pass@k",
    "entropy_adaptive": f"Pass@1 for the higher-entropy half of a batch, Pass@{K} for the rest "
    "(Sec. 4.2.3)",
    **{f"passk_analytic_k{k}": f"Pass@{k}, closed form" for k in EXTENDED_KS},
}

# Each claim: (text, parts, metric's label); a part (better arm, worse arm, metric) says
# mean(better) > mean(worse).
# pass@k metrics are in-distribution held-out means over mazes; train/* are per-run means over the
# logged steps (reward: all steps, its area under the curve; the others: the second half, where the
# arms have parted).
CLAIMS = [
    (
        "Pass@k training improves pass@k over Pass@1 training (Table 7, Fig. 3-5)",
        [("passk_analytic", "pass1", f"in_dist/pass@{K}")],
    ),
    (
        "the closed form is at least as good as bootstrap, and bootstrap better than full sampling "
        "at equal N "
        "(Sec. 2.4)",
        [
            ("passk_analytic", "passk_bootstrap", f"in_dist/pass@{K}"),
            ("passk_bootstrap", "passk_full", f"in_dist/pass@{K}"),
        ],
    ),
    (
        "Pass@k training keeps entropy and answer diversity higher (Sec. 3)",
        [
            ("passk_analytic", "pass1", "train/entropy"),
            ("passk_analytic", "pass1", "train/wrong_distinct_frac"),
        ],
    ),
    (
        "Pass@k -> Pass@1 reaches a higher pass@1 than Pass@1 training alone (Table 2)",
        [("passk_then_pass1", "pass1", "in_dist/pass@1")],
    ),
    (
        "larger k learns more slowly at the same learning rate (Sec. 2, App. A)",
        [
            (f"passk_analytic_k{EXTENDED_KS[0]}", "passk_analytic", "train/reward"),
            ("passk_analytic", f"passk_analytic_k{EXTENDED_KS[1]}", "train/reward"),
        ],
    ),
    (
        "combined and entropy-adaptive beat plain Pass@k training (Sec. 4.2)",
        [
            ("passk_combined", "passk_analytic", f"in_dist/pass@{K}"),
            ("entropy_adaptive", "passk_analytic", f"in_dist/pass@{K}"),
        ],
    ),
]
# Findings beyond the paper's claims: (text, parts) as in CLAIMS, each part a paired difference.
FINDINGS = [
    (
        "MaxRL against the closed-form Pass@4 advantage (Tajwar et al. 2026 vs Chen et al. 2025)",
        [
            ("maxrl", "passk_analytic", f"in_dist/{metric}")
            for metric in (
                "pass@1",
                f"pass@{K}",
                "pass@16",
                *(f"cover@{tau:g}" for tau in evaluation.COVER_TAUS),
            )
        ],
    ),
]
# the earlier, smaller study (3 seeds x 40 steps x 32 mazes a step, constant lr, unpaired Welch
# intervals, at 11294ce): linked from RESULTS.md as a note, never quoted as a verdict
EARLIER = "docs/results/40-steps.md"

# keys the runner sets for every run; the option that sets them instead
RUNNER_KEYS = {
    "rl.steps": "--steps",
    "rl.responses_per_prompt": "N_RESPONSES in experiments.py",
    "rl.advantage": "--arms",
    "rl.k": "--arms",
    "rl.schedule": "--arms",
    "run.seed": "--seeds",
    "run.name": "--arms",
    "run.out_dir": "--out",
    "run.resume": "the runner",
}
# the warm start's threads (0 = torch's default); every run uses one
WARM_START_ONLY = ("run.threads",)


class StudyError(ValueError):
    """A bad study setup: the message names the problem, in one line."""


# ----------------------------------------------------------------------------- arms and runs


def arm_schedule(arm: str, steps: int) -> list[dict]:
    """The arm's advantage schedule as train.py's rl.schedule: [{until_step, advantage, k}]
    (best_of_n and rs_grpo ignore k)."""
    if arm == "pass1":
        return [{"until_step": steps, "advantage": "grpo", "k": 1}]
    if arm == "passk_then_pass1":
        return [
            {"until_step": steps // 2, "advantage": "passk_analytic", "k": K},
            {"until_step": steps, "advantage": "grpo", "k": 1},
        ]
    if arm.startswith("passk_analytic_k"):
        return [
            {
                "until_step": steps,
                "advantage": "passk_analytic",
                "k": int(arm[len("passk_analytic_k") :]),
            }
        ]
    return [{"until_step": steps, "advantage": arm, "k": K}]


def run_name(arm: str, seed: int) -> str:
    return f"{arm}_s{seed}"


def study_defaults(cfg) -> list[str]:
    """Overrides the study applies before the user's: train.py's in-training eval and checkpoints,
    kept cheap."""
    samples, problems = TRAIN_EVAL_SAMPLES, min(TRAIN_EVAL_PROBLEMS, cfg.task.n_heldout)
    return [
        "--eval.every",
        str(TRAIN_EVAL_EVERY),
        "--eval.n_problems",
        str(problems),
        "--eval.n_samples",
        str(samples),
        "--eval.ks",
        json.dumps(evaluation.powers_of_two(samples)),
        "--run.checkpoint_every",
        str(CHECKPOINT_EVERY),
    ]


def train_args(
    config: str,
    defaults: list[str],
    overrides: list[str],
    init: str,
    arm: str,
    seed: int,
    steps: int,
    out: str,
) -> list[str]:
    """train.py's arguments for one run: the config, the study's defaults, the user's overrides,
    then the arm."""
    return [
        "--config",
        config,
        *defaults,
        *overrides,
        "--model.init",
        init,
        "--run.seed",
        str(seed),
        "--run.name",
        run_name(arm, seed),
        "--run.out_dir",
        out,
        "--run.threads",
        "1",
        "--run.progress",
        "false",
        "--rl.steps",
        str(steps),
        "--rl.responses_per_prompt",
        str(N_RESPONSES),
        "--rl.schedule",
        json.dumps(arm_schedule(arm, steps)),
    ]


def run_overrides(overrides: list[str]) -> list[str]:
    """The user's --section.key overrides (already valid for train.py) as [--key, value, ...] for
    every run.

    Keys the runner sets are refused by name; run.threads is the warm start's alone (runs use one
    thread).
    """
    pairs, i = [], 0
    while i < len(overrides):
        key, _, value = overrides[i][2:].partition("=")
        if not value:
            value, i = overrides[i + 1], i + 1
        i += 1
        if key in RUNNER_KEYS:
            raise StudyError(
                f"--{key} is set by the study for each run (use {RUNNER_KEYS[key]} instead)"
            )
        if key not in WARM_START_ONLY:
            pairs += [f"--{key}", value]
    return pairs
