"""Evaluation: unbiased pass@k and cover@tau on held-out problems, plots, a CLI over checkpoints.

pass@k is estimated from n samples per problem with c correct by the unbiased
estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k), computed as a product
of n-c+1..n terms (no huge binomials, stable for n in the thousands) and returned
as -expm1 of its log, so that tiny values keep their relative precision.
cover@tau (Dragoi et al. 2025, arXiv 2510.08325) is the share of problems whose
success rate c/n is at least tau, from the same n samples, for tau in COVER_TAUS:
pass@k can rise because many problems gain a little or a few gain a lot; cover@tau
tells which.

    python eval.py --ckpt runs/maze                      # its latest checkpoint: pass@k, k = 1 .. n
    python eval.py --ckpt runs/maze/ckpt_120 --temperature 0.6 --out runs/eval/maze_step120_t0.6
    python eval.py --ckpt runs/maze/latest --n 32 --problems 512 --overwrite   # replaces its report
    python eval.py --ckpt runs/study/pass1_s0 runs/study/pass1_s1 runs/study/pass1_s2   # over seeds
    python eval.py --plot runs/maze                      # redraw curves.png and passk.png
    python eval.py --plot runs/maze runs/maze_pass1      # runs/compare_maze_vs_maze_pass1.png
    python eval.py --model Qwen/Qwen2.5-0.5B-Instruct --chat --data data/math_sample.jsonl --n 32
    python eval.py --ckpt runs/math_qwen05b --data math_test.jsonl --n 32 --top-p 0.95

--ckpt takes a run directory, a ckpt_N directory or a run's `latest` file alike. The CLI
reports pass@k for every k up to n and cover@tau, with a 95 % interval from a bootstrap
over problems (the sampling noise of n samples per problem is inside it too, as each
resampled problem keeps its own c), as a table (passk.md, passk.json) and a plot
(passk_curve.png) in --out (default runs/eval/<run>_step<N> for a run's ckpt_N, or runs/eval/<model
name>); a report already there is never replaced without --overwrite. With several
checkpoints (the seeds of one recipe: checkpoints whose settings differ in more than the
seed are refused, naming the keys) it reports their mean and a 95 % t-interval over seeds
instead (`stats.seed_interval`); `stats.paired_interval` compares two recipes run with the same
seeds, `stats.welch_interval` two recipes' unpaired seeds. The plots are in plots.py.
"""

import threads  # noqa: F401  (first, before torch: OpenMP threads that step aside, threads.py)
import argparse
import json
import math
import os
import sys
from fractions import Fraction

import torch

import config
import distributed
import reward
import tasks
from checkpoint import checkpoint_dir, checkpoint_label, recipe_differences
from build import load_for_eval, pick_device
from hf_policy import load_hf
from plots import plot_run, plot_runs
from rollout import combine_seeds, generate
from stats import seed_interval


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that one of k samples drawn without replacement from n (c correct) is correct."""
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    if k == 1:  # c / n, correctly rounded (the product below rounds in its logs)
        return c / n
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i); 1 - exp(x) as -expm1(x) keeps tiny ones
    return -math.expm1(sum(math.log1p(-k / i) for i in range(n - c + 1, n + 1)))


COVER_TAUS = (0.25, 0.5, 0.75, 1.0)


def cover_at(correct: list[int], n: int, tau: float) -> float:
    """Cover@tau (Dragoi et al. 2025, arXiv 2510.08325): the share of problems with c/n >= tau.

    Compared exactly (c/n as a fraction): 0.75 of n = 12 is 9 right, never 8.999... .
    """
    if not 0 < tau <= 1:
        raise ValueError(f"cover_at needs 0 < tau <= 1, got {tau}")
    if not correct or any(not 0 <= c <= n for c in correct):
        raise ValueError(f"cover_at needs a non-empty list of correct counts in 0..n={n}")
    threshold = Fraction(str(tau))
    return sum(Fraction(c, n) >= threshold for c in correct) / len(correct)


def passk_and_cover(correct: list[int], n: int, ks, prefix="eval/") -> dict:
    """{prefix}pass@k for k <= n and {prefix}cover@tau, tau in COVER_TAUS, from the same counts."""
    metrics = {
        f"{prefix}pass@{k}": sum(pass_at_k(n, c, k) for c in correct) / len(correct)
        for k in ks
        if k <= n
    }
    metrics.update({f"{prefix}cover@{tau:g}": cover_at(correct, n, tau) for tau in COVER_TAUS})
    return metrics


def powers_of_two(n: int) -> list[int]:
    return [2**i for i in range(int(math.log2(n)) + 1)] + ([n] if n & (n - 1) else [])


@torch.no_grad()
def count_correct(
    policy,
    tokenizer,
    problems,
    task_name,
    *,
    n,
    max_new_tokens,
    temperature,
    top_p=1.0,
    top_k=0,
    seed=0,
    prompts_per_batch=64,
    reward_options=None,
):
    """n samples per problem -> correct counts [P] (ints), mean token entropy, mean response length.

    Under torchrun each rank samples a contiguous share of the problems and every rank gets all the
    counts back; seeds follow the problem's index in `problems`, so the numbers equal one process's.
    """
    policy.eval()
    correct, entropy_sum, token_count = [], 0.0, 0.0
    world, rank = distributed.world_size(), distributed.rank()
    first, end = rank * len(problems) // world, (rank + 1) * len(problems) // world
    for start in range(first, end, prompts_per_batch):
        chunk = problems[start : min(start + prompts_per_batch, end)]
        rollout = generate(
            policy,
            [tokenizer.encode_prompt(p.prompt) for p in chunk],
            n=n,
            max_new_tokens=max_new_tokens,
            eos_ids=tokenizer.eos_ids,
            pad_id=tokenizer.pad_id,
            valid_vocab=tokenizer.vocab_size,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seeds=[combine_seeds(seed, start + i) for i in range(len(chunk))],
            return_entropy=temperature > 0,
        )
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


def evaluate(
    policy,
    tokenizer,
    problems,
    task_name,
    *,
    n,
    max_new_tokens,
    temperature=1.0,
    top_p=1.0,
    ks=None,
    greedy=True,
    seed=0,
    reward_options=None,
    prefix="eval/",
) -> dict:
    """Metrics on held-out problems: pass@k for each k in ks (<= n), cover@tau (COVER_TAUS) from
    the same n samples, greedy accuracy, entropy, length."""
    correct, entropy, length = count_correct(
        policy,
        tokenizer,
        problems,
        task_name,
        n=n,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        reward_options=reward_options,
    )
    metrics = passk_and_cover(correct, n, ks or powers_of_two(n), prefix)
    metrics[f"{prefix}entropy"] = entropy
    metrics[f"{prefix}resp_len"] = length
    if greedy:
        greedy_correct, _, _ = count_correct(
            policy,
            tokenizer,
            problems,
            task_name,
            n=1,
            max_new_tokens=max_new_tokens,
            temperature=0.0,
            reward_options=reward_options,
        )
        metrics[f"{prefix}greedy"] = sum(greedy_correct) / len(greedy_correct)
    return metrics


def format_metrics(metrics: dict) -> str:
    return ", ".join(
        f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)
    )


def summary_table(before: dict, after: dict, ks) -> str:
    """Before/after RL in %: pass@k for ks, greedy, then cover@tau where the metrics hold it."""
    covers = [
        f"cover@{tau:g}" for tau in COVER_TAUS if "eval/cover@" + f"{tau:g}" in (after or before)
    ]
    columns = [f"pass@{k}" for k in ks] + ["greedy"] + covers
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, metrics in (("before RL", before), ("after RL", after)):
        if not metrics:  # eval.before: false
            continue
        lines.append(
            f"| {label} | "
            + " | ".join(f"{100 * metrics.get('eval/' + c, float('nan')):.1f}" for c in columns)
            + " |"
        )
    return "\n".join(lines)


# ------------------------------------------------ pass@k and cover@tau, bootstrap intervals


def pass_at_k_intervals(
    correct: list[int], n: int, ks=None, n_boot: int = 2000, seed: int = 0
) -> list[dict]:
    """Mean pass@k over problems for each k (default 1..n) with a 95 % bootstrap interval."""
    import numpy as np

    ks = list(ks or range(1, n + 1))
    table = np.array([[pass_at_k(n, c, k) for k in ks] for c in range(n + 1)])  # [n+1, K]
    per_problem = table[np.asarray(correct)]  # [P, K]
    # [n_boot, P]: the problem indices of each resampled problem set
    draws = np.random.default_rng(seed).integers(0, len(correct), size=(n_boot, len(correct)))
    rows = []
    for j, k in enumerate(ks):
        means = per_problem[:, j][draws].mean(1)  # [n_boot]: one resampled problem set each
        low, high = np.percentile(means, [2.5, 97.5])
        rows.append(
            {
                "k": k,
                "pass@k": float(per_problem[:, j].mean()),
                "low": float(low),
                "high": float(high),
            }
        )
    return rows


def cover_intervals(correct: list[int], n: int, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Cover@tau for tau in COVER_TAUS with a 95 % bootstrap interval over problems:
    [{tau, cover, low, high}]."""
    import numpy as np

    # [n_boot, P]: the problem indices of each resampled problem set
    draws = np.random.default_rng(seed).integers(0, len(correct), size=(n_boot, len(correct)))
    rows = []
    for tau in COVER_TAUS:
        # [P]: 1.0 where the problem's c/n reaches tau
        covered = np.array([Fraction(c, n) >= Fraction(str(tau)) for c in correct], dtype=float)
        low, high = np.percentile(covered[draws].mean(1), [2.5, 97.5])
        rows.append(
            {"tau": tau, "cover": cover_at(correct, n, tau), "low": float(low), "high": float(high)}
        )
    return rows


def write_passk_report(
    rows: list[dict], out_dir: str, title: str, interval: str = "95 % interval", cover_rows=()
) -> str:
    """passk.md (powers of two and n; cover@tau below when given), passk.json (every k) and
    passk_curve.png in out_dir; returns the table. rows: [{k, pass@k, low, high}]; cover_rows:
    [{tau, cover, low, high}]."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    os.makedirs(out_dir, exist_ok=True)
    shown = set(powers_of_two(rows[-1]["k"]))
    lines = [f"{title}\n", f"| k | pass@k | {interval} |", "|---|---|---|"]
    lines += [
        f"| {r['k']} | {100 * r['pass@k']:.1f} | {100 * r['low']:.1f} to {100 * r['high']:.1f} |"
        for r in rows
        if r["k"] in shown
    ]
    if cover_rows:
        lines += [
            "",
            f"| tau | cover@tau (share of problems with c/n >= tau) | {interval} |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['tau']:g} | {100 * r['cover']:.1f} | "
            f"{100 * r['low']:.1f} to {100 * r['high']:.1f} |"
            for r in cover_rows
        ]
    table = "\n".join(lines)
    with open(os.path.join(out_dir, "passk.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(out_dir, "passk.json"), "w") as f:
        json.dump(rows, f, indent=1)
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    ks = [r["k"] for r in rows]
    ax.plot(ks, [r["pass@k"] for r in rows], marker="o", ms=3)
    ax.fill_between(
        ks, [r["low"] for r in rows], [r["high"] for r in rows], alpha=0.25, label=interval
    )
    ax.set_xscale("log", base=2)
    ax.set(xlabel="k", ylabel="pass@k", title=title[:60], ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "passk_curve.png"), dpi=110)
    return table


# ----------------------------------------------------------------------------- CLI


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ckpt",
        nargs="+",
        help="a run directory (its latest checkpoint), a ckpt_N directory or a "
        "run's latest file; several (seeds of one recipe): mean and 95 %% t-interval over them",
    )
    parser.add_argument(
        "--model", help="a Hugging Face causal LM to evaluate: Hub name or local folder"
    )
    parser.add_argument(
        "--data", help="math problems (.jsonl or .parquet) instead of the task's held-out set"
    )
    parser.add_argument("--n", type=int, default=16, help="samples per problem (>= 1)")
    parser.add_argument(
        "--problems", type=int, default=0, help="held-out problems to use (0 = all)"
    )
    parser.add_argument("--temperature", type=float, default=1.0, help=">= 0 (0 is greedy)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus mass, in (0, 1]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batch", type=int, default=64, help="prompts per sampling batch (n responses each)"
    )
    overwrite = "replace a report already in the output folder (else refused)"
    parser.add_argument("--overwrite", action="store_true", help=overwrite)
    parser.add_argument(
        "--plot",
        metavar="RUN_DIR",
        nargs="+",
        help="one run: redraw its plots from metrics.jsonl; several: one figure comparing them "
        "(runs/compare_<A>_vs_<B>.png beside the first run, or --out)",
    )
    hf = parser.add_argument_group("with --model / --data")
    hf.add_argument(
        "--chat", action="store_true", help="--model: format prompts with the chat template"
    )
    hf.add_argument("--system-prompt", default="", help="--model --chat: system message")
    hf.add_argument(
        "--template",
        help="prompt template: math, gsm8k or plain (default: the checkpoint's, or math)",
    )
    hf.add_argument("--prompt-field", help="--data: field of the problem text (default prompt)")
    hf.add_argument("--answer-field", help="--data: field of the gold answer (default answer)")
    hf.add_argument(
        "--max-new-tokens", type=int, help="longest response (default: the checkpoint's, or 1024)"
    )
    hf.add_argument("--device", default="auto")
    hf.add_argument(
        "--decode", default="dynamic", help="--model: sampler cache, dynamic, static or compiled"
    )
    hf.add_argument(
        "--out",
        help="where passk.md/.json/_curve.png go (default runs/eval/<run>_step<N> or "
        "runs/eval/<model name>); with --plot of several runs, the figure's path",
    )
    return parser


def main(argv=None):
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.plot:
        return plot_cli(args)
    if bool(args.ckpt) == bool(args.model):
        parser.error("give one of --ckpt or --model (or --plot)")
    if args.model and not args.data:
        parser.error("--model needs --data (a math .jsonl or .parquet file)")
    check_numbers(parser, args)
    try:
        if args.model or args.data:
            if args.ckpt and len(args.ckpt) > 1:
                parser.error("--data evaluates one --ckpt at a time")
            args.ckpt = checkpoint_dir(args.ckpt[0]) if args.ckpt else None
            args.out = claim_report_dir(args, [args.ckpt] if args.ckpt else [])
            return evaluate_math_cli(args)
        checkpoints = [checkpoint_dir(path) for path in args.ckpt]
        differing = recipe_differences(checkpoints) if len(checkpoints) > 1 else []
        if differing:
            raise ValueError(
                f"--ckpt {' '.join(args.ckpt)} differ in more than the seed "
                f"({', '.join(differing)}): give the seeds of one recipe"
            )
        args.out = claim_report_dir(args, checkpoints)
        return evaluate_checkpoints_cli(args, checkpoints)
    except ValueError as err:  # ConfigError too: a missing path, model, file or field
        sys.exit(f"error: {err}")


def check_numbers(parser, args):
    """Numbers the sampler cannot use are argparse errors (one line after the usage), before any
    checkpoint is loaded."""
    refusals = (
        (args.n < 1, f"--n {args.n}: at least 1 sample per problem"),
        (args.problems < 0, f"--problems {args.problems}: at least 1 problem (0 = all)"),
        (
            not (args.temperature >= 0 and math.isfinite(args.temperature)),
            f"--temperature {args.temperature}: a number >= 0 (0 is greedy)",
        ),
        (not 0 < args.top_p <= 1, f"--top-p {args.top_p}: in (0, 1] (1 keeps every token)"),
        (args.batch < 1, f"--batch {args.batch}: at least 1 prompt per sampling batch"),
        (
            args.max_new_tokens is not None and args.max_new_tokens < 1,
            f"--max-new-tokens {args.max_new_tokens}: at least 1",
        ),
    )
    for refused, message in refusals:
        if refused:
            parser.error(message)


REPORT_FILES = ("passk.md", "passk.json", "passk_curve.png")


def claim_report_dir(args, checkpoints: list[str]) -> str:
    """--out, or runs/eval/<run>_step<N> (<model name> for --model): refused, before any sampling,
    when it already holds a report and --overwrite is not given, as train.py refuses to start a run
    over an earlier one."""
    labels = [checkpoint_label(checkpoint) for checkpoint in checkpoints]
    name = labels[0] if labels else os.path.basename(args.model.rstrip("/"))
    if len(labels) > 1:
        name = f"{labels[0]}_and_{len(labels) - 1}_more"
    out_dir = args.out or os.path.join("runs", "eval", name)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir} is a file, not a directory")
    found = [file for file in REPORT_FILES if os.path.exists(os.path.join(out_dir, file))]
    if found and not args.overwrite:
        raise ValueError(
            f"{out_dir} already holds a report ({', '.join(found)}): add --overwrite to replace "
            "it, or give this evaluation its own --out"
        )
    return out_dir


def sample_counts(*positional, **options):
    """count_correct for the CLI: a sampling batch too big for memory (or for torch's sizes) is a
    one-line ValueError that names --n and --batch, not the allocator's traceback."""
    try:
        return count_correct(*positional, **options)
    except (RuntimeError, OverflowError, MemoryError) as err:
        text = str(err)
        if isinstance(err, RuntimeError) and not any(
            words in text for words in ("can't allocate memory", "out of memory", "Overflow")
        ):
            raise
        raise ValueError(
            f"out of memory sampling {options['n']} responses for each of up to "
            f"{options['prompts_per_batch']} prompts at once: lower --n or --batch"
        ) from None


def plot_cli(args):
    if len(args.plot) == 1:
        try:
            plot_run(args.plot[0])
        except OSError as err:
            sys.exit(f"error: {err}")
        print(f"wrote {args.plot[0]}/curves.png and passk.png")
        return
    names = [os.path.basename(os.path.normpath(run)) for run in args.plot]
    path = args.out or os.path.join(
        os.path.dirname(os.path.normpath(args.plot[0])), "compare_" + "_vs_".join(names) + ".png"
    )
    try:
        plot_runs(args.plot, path)
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"wrote {path}")


def score_checkpoint(checkpoint: str, args) -> dict:
    """One checkpoint on its task's held-out problems: correct counts of args.n samples each, greedy
    accuracy, entropy, response length."""
    cfg, policy, tokenizer, task = load_for_eval(checkpoint)
    problems = task.heldout[: args.problems or None]
    options = dict(
        max_new_tokens=cfg.task.max_new_tokens,
        prompts_per_batch=args.batch,
        reward_options=config.reward_options(cfg),
    )
    correct, entropy, length = sample_counts(
        policy,
        tokenizer,
        problems,
        task.name,
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        **options,
    )
    greedy, _, _ = sample_counts(
        policy, tokenizer, problems, task.name, n=1, temperature=0.0, **options
    )
    return {
        "correct": correct,
        "greedy": sum(greedy) / len(greedy),
        "entropy": entropy,
        "resp_len": length,
        "task": task.name,
    }


def evaluate_checkpoints_cli(args, checkpoints: list[str]):
    """Checkpoints on their task's held-out problems: pass@k (k = 1..n) and cover@tau with a 95 %
    interval, greedy accuracy, entropy; printed, and written to --out as passk.md, passk.json and
    passk_curve.png.

    One checkpoint: a bootstrap over problems. Several (the seeds of one recipe, checked by
    recipe_differences): the mean over them and a t-interval over seeds; each uses its own run's
    held-out set (it depends on the run seed).
    """
    runs = [score_checkpoint(checkpoint, args) for checkpoint in checkpoints]
    n, ks = args.n, list(range(1, args.n + 1))
    if len(runs) == 1:
        interval = "95 % interval (bootstrap over problems)"
        rows = pass_at_k_intervals(runs[0]["correct"], n, ks, seed=args.seed)
        cover_rows = cover_intervals(runs[0]["correct"], n, seed=args.seed)
    else:
        interval = "95 % t-interval over seeds"
        rows, cover_rows = [], []
        for k in ks:
            seeds = seed_interval(
                [
                    sum(pass_at_k(n, c, k) for c in run["correct"]) / len(run["correct"])
                    for run in runs
                ]
            )
            rows.append(
                {"k": k, "pass@k": seeds["mean"], "low": seeds["low"], "high": seeds["high"]}
            )
        for tau in COVER_TAUS:
            seeds = seed_interval([cover_at(run["correct"], n, tau) for run in runs])
            cover_rows.append(
                {"tau": tau, "cover": seeds["mean"], "low": seeds["low"], "high": seeds["high"]}
            )
    names = [checkpoint_label(checkpoint, " step ") for checkpoint in checkpoints]
    title = (
        f"{', '.join(names)} on held-out {runs[0]['task']}: {len(runs[0]['correct'])} problems, "
        f"n = {n}, "
        f"temperature {args.temperature}, top-p {args.top_p}"
    )
    print(write_passk_report(rows, args.out, title, interval, cover_rows))
    for key in ("greedy", "entropy", "resp_len"):
        values = [run[key] for run in runs]
        print(
            f"{key} {sum(values) / len(values):.4f}"
            + (
                " (mean over seeds: " + ", ".join(f"{v:.4f}" for v in values) + ")"
                if len(runs) > 1
                else ""
            )
        )
    print(f"wrote {args.out}/passk.md, passk.json, passk_curve.png")
    return rows


def evaluate_math_cli(args):
    """A Hugging Face model (or a checkpoint) on a math file: pass@k for k = 1..n with intervals,
    cover@tau, a table and a plot."""
    if args.ckpt:
        cfg, policy, tokenizer, _ = load_for_eval(args.ckpt)
        name, options = checkpoint_label(args.ckpt, " step "), config.reward_options(cfg)
        task_cfg = cfg.task
    else:
        policy, tokenizer = load_hf(
            args.model,
            pick_device(args.device),
            chat=args.chat,
            system_prompt=args.system_prompt,
            decode=args.decode,
        )
        task_cfg, options = config.TaskConfig(max_new_tokens=1024), {}
        name = os.path.basename(args.model.rstrip("/"))
    problems = tasks.load_math_problems(
        args.data,
        args.template or task_cfg.template,
        args.prompt_field or task_cfg.prompt_field,
        args.answer_field or task_cfg.answer_field,
    )[: args.problems or None]
    correct, entropy, length = sample_counts(
        policy,
        tokenizer,
        problems,
        "math",
        n=args.n,
        max_new_tokens=args.max_new_tokens or task_cfg.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        prompts_per_batch=args.batch,
        reward_options=options,
    )
    rows = pass_at_k_intervals(correct, args.n, seed=args.seed)
    title = (
        f"{name} on {os.path.basename(args.data)}: {len(problems)} problems, n = {args.n}, "
        f"temperature {args.temperature}, top-p {args.top_p}"
    )
    print(
        write_passk_report(
            rows, args.out, title, cover_rows=cover_intervals(correct, args.n, seed=args.seed)
        )
    )
    print(
        f"mean entropy {entropy:.3f}, mean response length {length:.1f} tokens; "
        f"wrote {args.out}/passk.md, "
        f"passk.json, passk_curve.png"
    )
    return rows


if __name__ == "__main__":
    main()
