"""Evaluation: unbiased pass@k on held-out problems, plots, and a CLI over checkpoints.

pass@k is estimated from n samples per problem with c correct by the unbiased
estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k), computed as a product
of n-c+1..n terms (no huge binomials, stable for n in the thousands).

    python eval.py --ckpt runs/maze/ckpt_200            # pass@k for k = 1, 2, 4, ... n
    python eval.py --ckpt runs/maze/latest --n 32 --problems 512
    python eval.py --plot runs/maze                      # redraw curves.png and passk.png
"""
import argparse
import json
import math
import os
import sys

import torch

import reward
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
    """n samples per problem -> correct counts [P] (ints), mean token entropy, mean response length."""
    policy.eval()
    correct, entropy_sum, token_count = [], 0.0, 0.0
    for start in range(0, len(problems), prompts_per_batch):
        chunk = problems[start:start + prompts_per_batch]
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


# ----------------------------------------------------------------------------- plots

def read_metrics(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_run(run_dir):
    """curves.png: training reward and held-out pass@k over steps; passk.png: pass@k vs k, first vs last eval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    train = [r for r in rows if "train/reward" in r]
    evals = [r for r in rows if any(key.startswith("eval/pass@") for key in r)]
    ks = sorted({int(key.split("@")[1]) for r in evals for key in r if key.startswith("eval/pass@")})

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        left.plot([r["step"] for r in train], [r["train/reward"] for r in train], lw=1)
    left.set(xlabel="RL step", ylabel="mean reward", title="training reward")
    for k in ks:
        right.plot([r["step"] for r in evals], [r.get(f"eval/pass@{k}") for r in evals], marker="o", label=f"pass@{k}")
    right.set(xlabel="RL step", ylabel="held-out", title="held-out pass@k", ylim=(0, 1))
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "curves.png"), dpi=110)
    plt.close(fig)

    if evals:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for row, label in ((evals[0], f"warm start (step {evals[0]['step']})"), (evals[-1], f"after RL (step {evals[-1]['step']})")):
            ax.plot(ks, [row.get(f"eval/pass@{k}") for k in ks], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="k", ylabel="pass@k", title="held-out pass@k", ylim=(0, 1))
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(run_dir, "passk.png"), dpi=110)
        plt.close(fig)


# ----------------------------------------------------------------------------- CLI

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="checkpoint directory (or a run directory: its latest checkpoint)")
    parser.add_argument("--n", type=int, default=16, help="samples per problem")
    parser.add_argument("--problems", type=int, default=0, help="held-out problems to use (0 = all)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="RUN_DIR", help="redraw a run's plots from its metrics.jsonl")
    args = parser.parse_args(argv)
    if args.plot:
        plot_run(args.plot)
        print(f"wrote {args.plot}/curves.png and passk.png")
        return
    if not args.ckpt:
        parser.error("give --ckpt or --plot")
    import train
    try:
        cfg, policy, tokenizer, task = train.load_for_eval(args.ckpt)
    except train.ConfigError as err:
        sys.exit(f"error: {err}")
    problems = task.heldout[:args.problems or None]
    metrics = evaluate(policy, tokenizer, problems, task.name, n=args.n, max_new_tokens=cfg.task.max_new_tokens,
                       temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                       reward_options=train.reward_options(cfg), prefix="")
    print(f"{len(problems)} held-out problems, n = {args.n} samples each, temperature {args.temperature}")
    print("| metric | value |\n|---|---|")
    for key, value in metrics.items():
        print(f"| {key} | {value:.4f} |")


if __name__ == "__main__":
    main()
