"""Evaluation: unbiased pass@k on held-out problems, plots, and a CLI over checkpoints.

pass@k is estimated from n samples per problem with c correct by the unbiased
estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k), computed as a product
of n-c+1..n terms (no huge binomials, stable for n in the thousands).

    python eval.py --ckpt runs/maze/ckpt_200            # pass@k for k = 1, 2, 4, ... n
    python eval.py --ckpt runs/maze/latest --n 32 --problems 512
    python eval.py --ckpt runs/study/pass1_s0 runs/study/pass1_s1 runs/study/pass1_s2   # over seeds
    python eval.py --plot runs/maze                      # redraw curves.png and passk.png
    python eval.py --plot runs/maze runs/maze_pass1      # both runs on one figure: runs/compare_maze_vs_maze_pass1.png
    python eval.py --model Qwen/Qwen2.5-0.5B-Instruct --chat --data data/math_sample.jsonl --n 32
    python eval.py --ckpt runs/math_qwen05b --data math_test.jsonl --n 32 --top-p 0.95

The CLI reports pass@k for every k up to n with a 95 % interval from a bootstrap over
problems (the sampling noise of n samples per problem is inside it too, as each resampled
problem keeps its own c), as a table (passk.md, passk.json) and a plot (passk_curve.png).
With several checkpoints (one per seed) it reports their mean and a 95 % t-interval over
seeds instead (`seed_interval`); `paired_interval` compares two recipes run with the same seeds,
`welch_interval` two recipes' unpaired seeds.
"""
import argparse
import json
import math
import os
import sys

import torch
import yaml

import config
import distributed
import reward
import tasks
from checkpoint import resolve_checkpoint
from hf_policy import load_hf
from rollout import combine_seeds, generate


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct."""
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    return 1.0 - math.exp(sum(math.log1p(-k / i) for i in range(n - c + 1, n + 1)))


def powers_of_two(n: int) -> list[int]:
    return [2 ** i for i in range(int(math.log2(n)) + 1)] + ([n] if n & (n - 1) else [])


@torch.no_grad()
def sample_and_score(policy, tokenizer, problems, task_name, *, n, max_new_tokens, temperature, top_p=1.0,
                     top_k=0, seed=0, prompts_per_batch=64, reward_options=None):
    """n samples per problem -> correct counts [P] (ints), mean token entropy, mean response length.

    Under torchrun each rank samples a contiguous share of the problems and every rank gets all the
    counts back; seeds follow the problem's index in `problems`, so the numbers equal one process's.
    """
    policy.eval()
    correct, entropy_sum, token_count = [], 0.0, 0.0
    world, rank = distributed.world_size(), distributed.rank()
    first, end = rank * len(problems) // world, (rank + 1) * len(problems) // world
    for start in range(first, end, prompts_per_batch):
        chunk = problems[start:min(start + prompts_per_batch, end)]
        rollout = generate(policy, [tokenizer.encode_prompt(p.prompt) for p in chunk], n=n,
                           max_new_tokens=max_new_tokens, eos_ids=tokenizer.eos_ids, pad_id=tokenizer.pad_id,
                           valid_vocab=tokenizer.vocab_size, temperature=temperature, top_p=top_p, top_k=top_k,
                           seeds=[combine_seeds(seed, start + i) for i in range(len(chunk))],
                           return_entropy=temperature > 0)
        texts = [tokenizer.decode(row) for row in rollout.tokens.tolist()]
        golds = [p.gold for p in chunk for _ in range(n)]
        scores = torch.tensor(reward.score_batch(task_name, texts, golds, **(reward_options or {})))
        correct += (scores.view(len(chunk), n) > 0.5).sum(1).tolist()
        if rollout.entropy is not None:
            entropy_sum += float((rollout.entropy * rollout.response_mask).sum())
        token_count += float(rollout.response_mask.sum())
    correct = distributed.gather_lists(correct)
    entropy_sum, token_count = distributed.sum_floats([entropy_sum, token_count])
    return correct, entropy_sum / max(token_count, 1.0), token_count / (len(problems) * n)


def evaluate(policy, tokenizer, problems, task_name, *, n, max_new_tokens, temperature=1.0, top_p=1.0,
             ks=None, greedy=True, seed=0, reward_options=None, prefix="eval/") -> dict:
    """Metrics on held-out problems: pass@k for each k in ks (<= n), greedy accuracy, entropy, length."""
    correct, entropy, length = sample_and_score(policy, tokenizer, problems, task_name, n=n,
                                                max_new_tokens=max_new_tokens, temperature=temperature,
                                                top_p=top_p, seed=seed, reward_options=reward_options)
    metrics = {f"{prefix}pass@{k}": sum(pass_at_k(n, c, k) for c in correct) / len(correct)
               for k in (ks or powers_of_two(n)) if k <= n}
    metrics[f"{prefix}entropy"] = entropy
    metrics[f"{prefix}resp_len"] = length
    if greedy:
        greedy_correct, _, _ = sample_and_score(policy, tokenizer, problems, task_name, n=1,
                                                max_new_tokens=max_new_tokens, temperature=0.0,
                                                reward_options=reward_options)
        metrics[f"{prefix}greedy"] = sum(greedy_correct) / len(greedy_correct)
    return metrics


def format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


def summary_table(before: dict, after: dict, ks) -> str:
    columns = [f"pass@{k}" for k in ks] + ["greedy"]
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, metrics in (("before RL", before), ("after RL", after)):
        if not metrics:  # eval.before: false
            continue
        lines.append(f"| {label} | " + " | ".join(f"{100 * metrics.get('eval/' + c, float('nan')):.1f}"
                                                   for c in columns) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots

def read_metrics(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_run(run_dir):
    """curves.png: training reward and held-out pass@k over steps; passk.png: pass@k vs k, first vs last eval."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) stays as it is

    rows = read_metrics(run_dir)
    train = [r for r in rows if "train/reward" in r]
    evals = [r for r in rows if any(key.startswith("eval/pass@") for key in r)]
    ks = sorted({int(key.split("@")[1]) for r in evals for key in r if key.startswith("eval/pass@")})

    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    if train:
        left.plot([r["step"] for r in train], [r["train/reward"] for r in train], lw=1)
    left.set(xlabel="RL step", ylabel="mean reward", title="training reward")
    for k in ks:
        right.plot([r["step"] for r in evals], [r.get(f"eval/pass@{k}") for r in evals], marker="o", label=f"pass@{k}")
    right.set(xlabel="RL step", ylabel="held-out", title="held-out pass@k", ylim=(0, 1))
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "curves.png"), dpi=110)

    if evals:
        fig = Figure(figsize=(5.5, 4))
        ax = fig.subplots()
        for row, label in ((evals[0], f"warm start (step {evals[0]['step']})"), (evals[-1], f"after RL (step {evals[-1]['step']})")):
            ax.plot(ks, [row.get(f"eval/pass@{k}") for k in ks], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="k", ylabel="pass@k", title="held-out pass@k", ylim=(0, 1))
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(run_dir, "passk.png"), dpi=110)


def run_label(run_dir) -> str:
    """'<run name>: <advantage> k=<k>' from the run's config.yaml (each phase of a schedule, joined by ->)."""
    with open(os.path.join(run_dir, "config.yaml")) as f:
        rl = (yaml.safe_load(f) or {}).get("rl", {})
    phases = rl.get("schedule") or [{"advantage": rl.get("advantage"), "k": rl.get("k")}]
    recipe = " -> ".join(f"{p['advantage']} k={p['k']}" for p in phases)
    return f"{os.path.basename(os.path.normpath(run_dir))}: {recipe}"


def plot_runs(run_dirs, path):
    """One figure for several runs: held-out pass@1 and pass@(largest k) over steps, pass@k against k at the end."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) stays as it is

    fig = Figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2)
    for index, run_dir in enumerate(run_dirs):
        color, label = matplotlib.colormaps["tab10"](index % 10), run_label(run_dir)
        evals = [r for r in read_metrics(run_dir) if any(key.startswith("eval/pass@") for key in r)]
        if not evals:
            raise ValueError(f"{run_dir}: no held-out evaluation in metrics.jsonl yet")
        ks = sorted({int(key.split("@")[1]) for r in evals for key in r if key.startswith("eval/pass@")})
        steps = [r["step"] for r in evals]
        left.plot(steps, [r.get("eval/pass@1") for r in evals], marker="o", color=color, label=f"{label}, pass@1")
        left.plot(steps, [r.get(f"eval/pass@{ks[-1]}") for r in evals], marker="s", ls="--", color=color,
                  label=f"{label}, pass@{ks[-1]}")
        right.plot(ks, [evals[-1].get(f"eval/pass@{k}") for k in ks], marker="o", color=color,
                   label=f"{label} (step {steps[-1]})")
        if index == 0 and steps[0] == 0:
            right.plot(ks, [evals[0].get(f"eval/pass@{k}") for k in ks], marker=".", ls=":", color="gray",
                       label=f"{os.path.basename(os.path.normpath(run_dir))} before RL (step 0)")
    left.set(xlabel="RL step", ylabel="held-out pass@k", title="held-out pass@k over training", ylim=(0, 1))
    right.set_xscale("log", base=2)
    right.set(xlabel="k", ylabel="held-out pass@k", title="pass@k against k, last evaluation", ylim=(0, 1))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


# ----------------------------------------------------------------------------- pass@k with intervals

def pass_at_k_intervals(correct: list[int], n: int, ks=None, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Mean pass@k over problems for each k (default 1..n) and a 95 % bootstrap interval over problems."""
    import numpy as np

    ks = list(ks or range(1, n + 1))
    table = np.array([[pass_at_k(n, c, k) for k in ks] for c in range(n + 1)])  # [n+1, K]: c correct of n
    per_problem = table[np.asarray(correct)]  # [P, K]
    draws = np.random.default_rng(seed).integers(0, len(correct), size=(n_boot, len(correct)))  # [n_boot, P]
    rows = []
    for j, k in enumerate(ks):
        means = per_problem[:, j][draws].mean(1)  # [n_boot]: one resampled problem set each
        low, high = np.percentile(means, [2.5, 97.5])
        rows.append({"k": k, "pass@k": float(per_problem[:, j].mean()), "low": float(low), "high": float(high)})
    return rows


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t with df > 0 degrees of freedom (fractional too, as Welch's are).

    Bisection on the CDF, whose upper half is the t density integrated by Simpson's rule on [0, t];
    accurate to about 1e-6 for the quantiles intervals use (p in 0.9 .. 0.999, any df).
    """
    import numpy as np

    if not 0 < p < 1 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(t):
        x = np.linspace(0.0, t, 4001)
        density = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
        simpson = density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum()
        return 0.5 + simpson * (x[1] - x[0]) / 3

    low, high = 0.0, 1.0
    while cdf(high) < p:
        low, high = high, 2 * high
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < p else (low, middle)
    return (low + high) / 2


def seed_interval(values, level: float = 0.95) -> dict:
    """Mean over runs (seeds) and its t-interval: mean ± t_{(1+level)/2, n-1} s / sqrt(n), s the sample std.

    One value has no spread to measure: half, low and high are nan.
    """
    n = len(values)
    if n == 0:
        raise ValueError("seed_interval needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return {"mean": mean, "half": float("nan"), "low": float("nan"), "high": float("nan"), "n": 1}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1 + level) / 2, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "half": half, "low": mean - half, "high": mean + half, "n": n}


def paired_interval(a, b, level: float = 0.95) -> dict:
    """Interval of the mean of the paired differences a[i] - b[i] (two arms' runs of the same seeds):
    mean(d) ± t_{(1+level)/2, n-1} s_d / sqrt(n), s_d the sample std of the differences.

    Pairing removes what the two runs of a seed share (the prompt stream, the sampling seeds). Fewer
    than 2 pairs: low, high and half are nan.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_interval needs two equal, non-empty lists, got {len(a)} and {len(b)} values")
    interval = seed_interval([x - y for x, y in zip(a, b)], level)
    return {"diff": interval["mean"], "low": interval["low"], "high": interval["high"], "half": interval["half"],
            "n": len(a)}


def welch_interval(a, b, level: float = 0.95) -> dict:
    """Interval of mean(a) - mean(b) for two sets of runs with unequal variances (Welch-Satterthwaite df).

    Fewer than 2 values on a side: low and high are nan. No spread on either side: the interval is the
    difference itself.
    """
    if not a or not b:
        raise ValueError("welch_interval needs at least one value on each side")
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    diff, nan = mean_a - mean_b, float("nan")
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "low": nan, "high": nan, "df": nan}
    var_a = sum((v - mean_a) ** 2 for v in a) / (len(a) - 1) / len(a)  # squared standard errors of the means
    var_b = sum((v - mean_b) ** 2 for v in b) / (len(b) - 1) / len(b)
    if var_a + var_b == 0:
        return {"diff": diff, "low": diff, "high": diff, "df": float("inf")}
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
    half = t_quantile((1 + level) / 2, df) * math.sqrt(var_a + var_b)
    return {"diff": diff, "low": diff - half, "high": diff + half, "df": df}


def write_passk_report(rows: list[dict], out_dir: str, title: str) -> str:
    """passk.md (powers of two and n), passk.json (every k) and passk_curve.png in out_dir; returns the table."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) stays as it is

    os.makedirs(out_dir, exist_ok=True)
    shown = set(powers_of_two(rows[-1]["k"]))
    lines = [f"{title}\n", "| k | pass@k | 95 % interval |", "|---|---|---|"]
    lines += [f"| {r['k']} | {100 * r['pass@k']:.1f} | {100 * r['low']:.1f} to {100 * r['high']:.1f} |"
              for r in rows if r["k"] in shown]
    table = "\n".join(lines)
    with open(os.path.join(out_dir, "passk.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(out_dir, "passk.json"), "w") as f:
        json.dump(rows, f, indent=1)
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    ks = [r["k"] for r in rows]
    ax.plot(ks, [r["pass@k"] for r in rows], marker="o", ms=3)
    ax.fill_between(ks, [r["low"] for r in rows], [r["high"] for r in rows], alpha=0.25, label="95 % interval")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="k", ylabel="pass@k", title=title[:60], ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "passk_curve.png"), dpi=110)
    return table


# ----------------------------------------------------------------------------- CLI

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", nargs="+", help="checkpoint directory (or a run directory: its latest checkpoint); "
                        "several (one per seed): mean and 95 %% t-interval over them")
    parser.add_argument("--model", help="a Hugging Face causal LM to evaluate: Hub name or local folder")
    parser.add_argument("--data", help="math problems (.jsonl or .parquet) instead of the task's held-out set")
    parser.add_argument("--n", type=int, default=16, help="samples per problem")
    parser.add_argument("--problems", type=int, default=0, help="held-out problems to use (0 = all)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="RUN_DIR", nargs="+",
                        help="one run: redraw its plots from metrics.jsonl; several: one figure comparing them "
                             "(runs/compare_<A>_vs_<B>.png beside the first run, or --out)")
    hf = parser.add_argument_group("with --model / --data")
    hf.add_argument("--chat", action="store_true", help="--model: format prompts with the chat template")
    hf.add_argument("--system-prompt", default="", help="--model --chat: system message")
    hf.add_argument("--template", help="prompt template: math, gsm8k or plain (default: the checkpoint's, or math)")
    hf.add_argument("--prompt-field", help="--data: field of the problem text (default prompt)")
    hf.add_argument("--answer-field", help="--data: field of the gold answer (default answer)")
    hf.add_argument("--max-new-tokens", type=int, help="longest response (default: the checkpoint's, or 1024)")
    hf.add_argument("--batch", type=int, default=64, help="prompts per sampling batch (n responses each)")
    hf.add_argument("--device", default="auto")
    hf.add_argument("--decode", default="dynamic", help="--model: sampler cache, dynamic, static or compiled")
    hf.add_argument("--out", help="where passk.md/.json/_curve.png go (default runs/eval/<model or checkpoint>); "
                    "with --plot of several runs, the figure's path")
    args = parser.parse_args(argv)
    if args.plot:
        if len(args.plot) == 1:
            plot_run(args.plot[0])
            print(f"wrote {args.plot[0]}/curves.png and passk.png")
            return
        names = [os.path.basename(os.path.normpath(run)) for run in args.plot]
        path = args.out or os.path.join(os.path.dirname(os.path.normpath(args.plot[0])),
                                        "compare_" + "_vs_".join(names) + ".png")
        try:
            plot_runs(args.plot, path)
        except (OSError, ValueError) as err:
            sys.exit(f"error: {err}")
        print(f"wrote {path}")
        return
    if bool(args.ckpt) == bool(args.model):
        parser.error("give one of --ckpt or --model (or --plot)")
    if args.model and not args.data:
        parser.error("--model needs --data (a math .jsonl or .parquet file)")
    if args.model or args.data:
        if args.ckpt and len(args.ckpt) > 1:
            parser.error("--data evaluates one --ckpt at a time")
        args.ckpt = args.ckpt[0] if args.ckpt else None
        return evaluate_math_cli(args)
    return evaluate_checkpoints_cli(args)


def evaluate_checkpoints_cli(args):
    """Checkpoints on their task's held-out problems: pass@k with a 95 % interval, greedy accuracy, entropy.

    One checkpoint: a bootstrap over problems. Several (the seeds of one recipe): the mean over them and
    a t-interval over seeds; each uses its own run's held-out set (it depends on the run seed).
    """
    runs = []
    for ckpt in args.ckpt:
        try:
            cfg, policy, tokenizer, task = config.load_for_eval(ckpt)
        except config.ConfigError as err:
            sys.exit(f"error: {err}")
        problems = task.heldout[:args.problems or None]
        options = dict(max_new_tokens=cfg.task.max_new_tokens, reward_options=config.reward_options(cfg))
        correct, entropy, length = sample_and_score(policy, tokenizer, problems, task.name, n=args.n,
                                                    temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                                                    **options)
        greedy, _, _ = sample_and_score(policy, tokenizer, problems, task.name, n=1, temperature=0.0, **options)
        runs.append({"correct": correct, "greedy": sum(greedy) / len(greedy), "entropy": entropy, "resp_len": length})
    ks = powers_of_two(args.n)
    print(f"{len(runs[0]['correct'])} held-out problems, n = {args.n} samples each, temperature {args.temperature}, "
          f"top-p {args.top_p}, {len(runs)} checkpoint(s)")
    if len(runs) == 1:
        print("| metric | value | 95 % interval (bootstrap over problems) |\n|---|---|---|")
        rows = pass_at_k_intervals(runs[0]["correct"], args.n, ks, seed=args.seed)
        for row in rows:
            print(f"| pass@{row['k']} | {row['pass@k']:.4f} | {row['low']:.4f} to {row['high']:.4f} |")
    else:
        print("| metric | mean | 95 % t-interval over seeds | per seed |\n|---|---|---|---|")
        rows = []
        for k in ks:
            values = [sum(pass_at_k(args.n, c, k) for c in run["correct"]) / len(run["correct"]) for run in runs]
            interval = seed_interval(values)
            rows.append({"k": k, "pass@k": interval["mean"], "low": interval["low"], "high": interval["high"]})
            print(f"| pass@{k} | {interval['mean']:.4f} | {interval['low']:.4f} to {interval['high']:.4f} | "
                  + ", ".join(f"{v:.4f}" for v in values) + " |")
    for key in ("greedy", "entropy", "resp_len"):
        values = [run[key] for run in runs]
        print(f"| {key} | {sum(values) / len(values):.4f} | | |" if len(runs) > 1 else f"| {key} | {values[0]:.4f} | |")
    return rows


def evaluate_math_cli(args):
    """A Hugging Face model (or a checkpoint) on a math file: pass@k for k = 1..n with intervals, table and plot."""
    try:
        if args.ckpt:
            cfg, policy, tokenizer, _ = config.load_for_eval(args.ckpt)
            task_cfg, name, options = cfg.task, os.path.basename(resolve_checkpoint(args.ckpt)), \
                config.reward_options(cfg)
        else:
            policy, tokenizer = load_hf(args.model, config.pick_device(args.device), chat=args.chat,
                                        system_prompt=args.system_prompt, decode=args.decode)
            task_cfg, options = config.TaskConfig(max_new_tokens=1024), {}
            name = os.path.basename(args.model.rstrip("/"))
        problems = tasks.load_math_problems(args.data, args.template or task_cfg.template,
                                            args.prompt_field or task_cfg.prompt_field,
                                            args.answer_field or task_cfg.answer_field)[:args.problems or None]
    except ValueError as err:  # config.ConfigError too: a missing model, file or field, in one line
        sys.exit(f"error: {err}")
    correct, entropy, length = sample_and_score(
        policy, tokenizer, problems, "math", n=args.n, max_new_tokens=args.max_new_tokens or task_cfg.max_new_tokens,
        temperature=args.temperature, top_p=args.top_p, seed=args.seed, prompts_per_batch=args.batch,
        reward_options=options)
    rows = pass_at_k_intervals(correct, args.n, seed=args.seed)
    out_dir = args.out or os.path.join("runs", "eval", name)
    title = (f"{name} on {os.path.basename(args.data)}: {len(problems)} problems, n = {args.n}, "
             f"temperature {args.temperature}, top-p {args.top_p}")
    print(write_passk_report(rows, out_dir, title))
    print(f"mean entropy {entropy:.3f}, mean response length {length:.1f} tokens; wrote {out_dir}/passk.md, "
          f"passk.json, passk_curve.png")
    return rows


if __name__ == "__main__":
    main()
