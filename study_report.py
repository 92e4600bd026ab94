"""The study's numbers and its report: per-run summaries, intervals over seeds, the verdict rule,
the tables, the plots and RESULTS.md (experiments.py runs the study and calls `write_report`).

Left out: a correction for testing several claims at once (each verdict stands alone).
"""
import collections
import hashlib
import json
import math
import os
import subprocess

import advantage
import eval as evaluation

TABLE_KS = (1, 2, 4, 8, 16, 32)
LEVEL = 0.95            # every interval in the report
TRAIN_METRICS = ("train/reward", "train/entropy", "train/wrong_distinct_frac", "train/all_agree_frac")
SECOND_HALF_METRICS = ("train/entropy", "train/wrong_distinct_frac", "train/all_agree_frac")
EVAL_FILE = "study_eval.json"  # what a finished run's evaluation writes in its run directory (experiments.run_job)
RESULT_FILE = "result.json"    # a finished run's stored result: its evaluation, its trimmed metrics, its settings
REPO = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- numbers

def mean_pass_at_k(correct: list[int], n: int, k: int) -> float:
    return sum(evaluation.pass_at_k(n, c, k) for c in correct) / len(correct)


def run_numbers(result_path: str) -> dict:
    """One run's scalars from its stored result: {in_dist,larger}/pass@k for k = 1..n, the train/* summaries,
    and its curves."""
    with open(result_path) as f:
        stored = json.load(f)
    result, rows = stored["eval"], stored["metrics"]
    n = result["n_samples"]
    numbers = {"seed": result["seed"], "result": result, "rows": rows}
    for name, chosen in result["sets"].items():
        for k in range(1, n + 1):
            numbers[f"{name}/pass@{k}"] = mean_pass_at_k(chosen["correct"], n, k)
    train_rows = [r for r in rows if "train/reward" in r]
    for metric in TRAIN_METRICS:
        kept = train_rows[len(train_rows) // 2:] if metric in SECOND_HALF_METRICS else train_rows
        values = [r[metric] for r in kept if isinstance(r.get(metric), float) and math.isfinite(r[metric])]
        numbers[metric] = sum(values) / len(values) if values else float("nan")
    return numbers


def judge(parts: list[dict]) -> str:
    """The verdict rule: each part's 95 % paired t-interval of the per-seed differences better - worse.

    A part confirms when its interval lies above 0, refutes when it lies below 0, and cannot tell
    when it holds 0 or cannot be computed (an arm not run, fewer than 2 common seeds). A claim confirms
    when every part confirms, refutes when any part refutes, and otherwise cannot tell.
    """
    verdicts = []
    for part in parts:
        low, high = part.get("low", float("nan")), part.get("high", float("nan"))
        verdicts.append("confirms" if low > 0 else "refutes" if high < 0 else "cannot tell")
    if "refutes" in verdicts:
        return "refutes"
    return "confirms" if verdicts and all(v == "confirms" for v in verdicts) else "cannot tell"


def claim_parts(claim_parts_spec, by_arm: dict, extended_arms=()) -> list[dict]:
    parts = []
    for better, worse, metric in claim_parts_spec:
        part = {"better": better, "worse": worse, "metric": metric}
        missing = [arm for arm in (better, worse) if arm not in by_arm]
        if missing:
            extended = " (--extended)" if set(missing) & set(extended_arms) else ""
            part["why"] = f"{', '.join(missing)} not run{extended}"
        else:  # paired by seed: the runs of a seed share the warm start, the prompts and the sampling seeds
            by_seed = [{run.get("seed", i): run[metric] for i, run in enumerate(by_arm[arm])}
                       for arm in (better, worse)]
            seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
            a, b = [by_seed[0][s] for s in seeds], [by_seed[1][s] for s in seeds]
            welch = evaluation.welch_interval(list(by_seed[0].values()), list(by_seed[1].values()), LEVEL)
            part.update(mean_better=_mean(list(by_seed[0].values())), mean_worse=_mean(list(by_seed[1].values())),
                        welch_low=welch["low"], welch_high=welch["high"], n_pairs=len(seeds))
            if seeds:
                part.update(evaluation.paired_interval(a, b, LEVEL))
            if len(seeds) < 2:
                part["why"] = "needs 2 or more seeds run by both arms"
        parts.append(part)
    return parts


def _mean(values):
    return sum(values) / len(values)


def scale(metric: str) -> float:
    return 100.0 if "pass@" in metric or metric.endswith("_frac") or metric == "train/reward" else 1.0


def describe_part(part: dict) -> str:
    """One part of a claim in words: the paired difference, its interval, Welch's beside it, and the design's
    power where the interval holds 0 (no difference larger than its half-width could be seen)."""
    metric, s = part["metric"], scale(part["metric"])
    if "mean_better" not in part:
        return f"{part['better']} vs {part['worse']} on {metric}: {part['why']}"
    unit = " points" if s == 100.0 else ""
    text = (f"{part['better']} {s * part['mean_better']:.2f} vs {part['worse']} {s * part['mean_worse']:.2f} "
            f"on {metric}, paired difference {s * part.get('diff', float('nan')):+.2f}{unit}")
    if "why" in part:
        return text + f" ({part['why']})"
    text += (f" (95 % paired CI {s * part['low']:+.2f} to {s * part['high']:+.2f} over {part['n_pairs']} seeds; "
             f"Welch, unpaired: {s * part['welch_low']:+.2f} to {s * part['welch_high']:+.2f})")
    if part["low"] <= 0 <= part["high"]:
        text += f"; no difference larger than {s * part['half']:.2f}{unit} either way could be seen"
    return text


# ----------------------------------------------------------------------------- the report

def cell(values: list[float], single_run_interval=None, factor=100.0, digits=1) -> str:
    """mean ± t half-width over seeds; one seed: the value and its bootstrap interval over mazes, in brackets."""
    if len(values) >= 2:
        interval = evaluation.seed_interval(values, LEVEL)
        return f"{factor * interval['mean']:.{digits}f} ± {factor * interval['half']:.{digits}f}"
    if single_run_interval is not None:
        low, high = single_run_interval
        return f"{factor * values[0]:.{digits}f} [{factor * low:.{digits}f}, {factor * high:.{digits}f}]"
    return f"{factor * values[0]:.{digits}f}"


def passk_table(by_arm: dict, set_name: str, ks) -> str:
    lines = ["| arm | seeds | " + " | ".join(f"pass@{k}" for k in ks) + " |", "|---" * (len(ks) + 2) + "|"]
    for arm, runs in by_arm.items():
        cells = []
        for k in ks:
            interval = None
            if len(runs) == 1:
                chosen = runs[0]["result"]["sets"][set_name]
                row = evaluation.pass_at_k_intervals(chosen["correct"], runs[0]["result"]["n_samples"], ks=[k])[0]
                interval = (row["low"], row["high"])
            cells.append(cell([r[f"{set_name}/pass@{k}"] for r in runs], interval))
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def training_table(by_arm: dict) -> str:
    columns = [("train/reward", "reward, all steps (%)", 100.0, 1),
               ("train/entropy", "entropy, 2nd half (nats)", 1.0, 3),
               ("train/wrong_distinct_frac", "distinct wrong answers, 2nd half (%)", 100.0, 1),
               ("train/all_agree_frac", "prompts whose N agree, 2nd half (%)", 100.0, 1)]
    lines = ["| arm | seeds | " + " | ".join(c[1] for c in columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for arm, runs in by_arm.items():
        cells = [cell([r[metric] for r in runs], factor=factor, digits=digits) for metric, _, factor, digits in columns]
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def smooth(values: list[float], window: int) -> list[float]:
    """Centred moving average over the finite values in each window (train metrics are noisy step to step)."""
    half = window // 2
    out = []
    for i in range(len(values)):
        near = [v for v in values[max(0, i - half):i + half + 1] if math.isfinite(v)]
        out.append(sum(near) / len(near) if near else float("nan"))
    return out


def seed_mean_curve(runs: list[dict], metric: str) -> tuple[list[int], list[float]]:
    """(steps, mean over seeds) of a logged metric, at the steps every seed logged it (a run's last value)."""
    per_step = {}
    for index, run in enumerate(runs):
        for row in run["rows"]:
            value = row.get(metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                per_step.setdefault(row["step"], {})[index] = float(value)  # a resumed run may log a step twice
    steps = sorted(s for s, values in per_step.items() if len(values) == len(runs))
    return steps, [_mean([v for v in per_step[s].values() if math.isfinite(v)] or [float("nan")]) for s in steps]


def sizes_label(sizes: list[int]) -> str:
    return f"{sizes[0]}x{sizes[0]}" + (f" to {sizes[-1]}x{sizes[-1]}" if len(sizes) > 1 else "")


def plot_report(by_arm: dict, figure_dir: str, steps: int, arm_names, n_responses: int) -> dict:
    """passk_vs_k.png, training.png and eta.png in figure_dir; returns {name: path}."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) stays as it is

    os.makedirs(figure_dir, exist_ok=True)
    colors = {arm: matplotlib.colormaps["tab10"](i % 10) for i, arm in enumerate(arm_names)}
    paths = {name: os.path.join(figure_dir, f"{name}.png") for name in ("passk_vs_k", "training", "eta")}

    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, set_name in zip(axes, ("in_dist", "larger")):
        for arm, runs in by_arm.items():
            chosen = runs[0]["result"]["sets"][set_name]
            n = runs[0]["result"]["n_samples"]
            ks = list(range(1, n + 1))
            means = [_mean([r[f"{set_name}/pass@{k}"] for r in runs]) for k in ks]
            ax.plot(ks, means, marker="o", ms=2.5, color=colors[arm], label=f"{arm} ({len(runs)} seeds)")
            if len(runs) >= 2:
                intervals = [evaluation.seed_interval([r[f"{set_name}/pass@{k}"] for r in runs], LEVEL) for k in ks]
                ax.fill_between(ks, [i["low"] for i in intervals], [i["high"] for i in intervals], color=colors[arm],
                                alpha=0.12)
        ax.set_xscale("log", base=2)
        ax.set_xticks(evaluation.powers_of_two(n), [str(k) for k in evaluation.powers_of_two(n)])
        ax.set(xlabel="k", title=f"held-out {'training sizes' if set_name == 'in_dist' else 'one size larger'} "
                                 f"({sizes_label(chosen['sizes'])}, {len(chosen['correct'])} mazes)", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"pass@k (mean over seeds, {int(100 * LEVEL)} % band)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(paths["passk_vs_k"], dpi=110)

    panels = [("eval/pass@1", "held-out pass@1 (in-training eval)"), ("train/reward", "training reward"),
              ("train/entropy", "mean token entropy"), ("train/wrong_distinct_frac", "distinct answers among wrong"),
              ("train/all_agree_frac", "prompts whose N responses agree")]
    window = max(1, steps // 10)
    fig = Figure(figsize=(14, 7.5))
    axes = fig.subplots(2, 3)
    for ax, (metric, title) in zip(axes.flat, panels):
        for arm, runs in by_arm.items():
            x, y = seed_mean_curve(runs, metric)
            if metric.startswith("train/"):
                y = smooth(y, window)
            ax.plot(x, y, color=colors[arm], marker="o" if metric.startswith("eval/") else None, ms=3, label=arm)
        if "passk_then_pass1" in by_arm:
            ax.axvline(steps // 2, color=colors["passk_then_pass1"], ls=":", lw=1)  # its switch to Pass@1
        ax.set(xlabel="RL step", title=title + (f" (moving mean of {window})" if metric.startswith("train/") and
                                                window > 1 else ""))
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].axis("off")
    axes.flat[-1].legend(handles, labels, loc="center", fontsize=9, title="mean over seeds")
    fig.tight_layout()
    fig.savefig(paths["training"], dpi=110)

    advantage.plot_eta(paths["eta"], n=n_responses)
    return paths


def shown(path: str) -> str:
    """A path relative to the working directory when it lies below it (RESULTS.md should not name /home/...)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def git_state() -> dict:
    """HEAD, the changed files, and a hash of the code the runs execute (the repo's top-level .py files)."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    digest = hashlib.sha1()
    for name in sorted(f for f in os.listdir(REPO) if f.endswith(".py")):
        with open(os.path.join(REPO, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"head": git("rev-parse", "HEAD").strip() or "unknown (not a git checkout)", "changed": changed,
            "code_sha1": digest.hexdigest()[:12]}


def provenance(by_arm: dict) -> list[str]:
    """Report lines on where the runs came from: code revisions, machines, warm starts (each result records its own)."""
    results = [run["result"] for runs in by_arm.values() for run in runs]
    counted = lambda values: "; ".join(f"{value} ({count} runs)" if len(set(values)) > 1 else value
                                       for value, count in sorted(collections.Counter(values).items()))
    # the code's hash, not HEAD: a sweep that commits its results moves HEAD without changing the code
    revisions = [f"code sha1 `{r['code']['code_sha1']}`" if r.get("code") else "not recorded" for r in results]
    heads = sorted({r["code"]["head"][:12] for r in results if r.get("code")})
    machines = [", ".join(f"{k} {v}" for k, v in r["machine"].items()) if r.get("machine") else "not recorded"
                for r in results]
    warm_starts = [r.get("warm_start_sha1") or "not recorded" for r in results]
    lines = [f"- the runs' code: {counted(revisions)} (the top-level .py files; git "
             f"{', '.join(f'`{h}`' for h in heads[:3])}{' and later result commits' if len(heads) > 1 else ''})",
             f"- on {counted(machines)}" + ("" if len(set(machines)) == 1 else
                                            " (machines whose floats differ: a seed's two arms may come from "
                                            "different ones)"),
             f"- every run started from the warm start whose weights hash to {counted(warm_starts)}"
             + ("; the verdicts below hold for that one warm start" if len(set(warm_starts)) == 1 else
                "; runs from different warm starts are paired all the same: read the verdicts with care")]
    return lines


def write_report(path: str, *, command: str, wall_s: float, config: str, base, runs: list[tuple[str, str]],
                 steps: int, init: str, skipped: int, eval_samples: int, jobs: int, arm_docs: dict, claims: list,
                 extended_arms, n_responses: int, k: int, earlier=("", {})) -> str:
    """RESULTS.md (and its figures in docs/results/ beside it) from the runs' stored results.

    earlier: (path of an earlier study's report, {claim number: what it measured}), quoted for a claim whose
    arms this study did not run.
    """
    by_arm = {}
    for arm, result_path in runs:
        by_arm.setdefault(arm, []).append(run_numbers(result_path))
    report_dir = os.path.dirname(os.path.abspath(path))
    figures = plot_report(by_arm, os.path.join(report_dir, "docs", "results"), steps, arm_docs, n_responses)
    rel = {name: os.path.relpath(p, report_dir) for name, p in figures.items()}
    git = git_state()
    first = next(iter(by_arm.values()))[0]["result"]
    sets = first["sets"]
    seeds = sorted({run["seed"] for runs in by_arm.values() for run in runs})
    seconds = [run["result"].get("seconds", {}) for runs in by_arm.values() for run in runs]
    cpu_minutes = sum(s.get("train_cpu", 0) + s.get("eval_cpu", 0) for s in seconds) / 60
    code = [f for f in git["changed"] if f.endswith(".py") and "/" not in f or f.startswith("configs/")]
    dirty = (f"; dirty tree: {len(git['changed'])} changed or untracked paths, code and configs among them: "
             f"{', '.join(code) or 'none'}") if git["changed"] else "; clean tree"
    rl = base.rl
    lines = [
        "# Pass@1 vs Pass@k training on mazes: the study",
        "",
        "Written by `experiments.py` (its docstring describes the study); rerun the command to regenerate it.",
        "",
        f"- command: `{command}`",
        f"- wall time: {wall_s / 60:.1f} min ({wall_s:.0f} s) for this invocation "
        f"({skipped} of {len(runs)} runs were already finished and skipped); the runs' train and eval took "
        f"{cpu_minutes:.1f} CPU minutes in all, one thread per run, {jobs} runs at a time",
        f"- git: `{git['head']}`{dirty} (this report); sha1 of the top-level .py files: `{git['code_sha1']}`",
        *provenance(by_arm),
        f"- config: `{os.path.relpath(config, REPO)}`" + (f"; warm start (every run's model.init): `{shown(init)}`"
                                                          if init else ""),
        f"- every run: {steps} RL steps x {rl.prompts_per_step} prompts x N = {n_responses} responses, lr {rl.lr} "
        f"({rl.lr_schedule} after {rl.warmup} warmup steps), {rl.minibatches} mini-batches, seeds "
        f"{', '.join(map(str, seeds))}; Pass@k arms use k = {k}",
        f"- held-out evaluation: {eval_samples} samples per maze at temperature {first['temperature']}, top-p "
        f"{first['top_p']}, unbiased pass@k; training sizes {sizes_label(sets['in_dist']['sizes'])} "
        f"({len(sets['in_dist']['correct'])} mazes, at most {sets['in_dist']['max_new_tokens']} tokens) and "
        f"{sizes_label(sets['larger']['sizes'])} ({len(sets['larger']['correct'])} mazes, at most "
        f"{sets['larger']['max_new_tokens']} tokens); the training-size mazes are task.seed's held-out set, "
        f"which no warm-start or RL stream draws",
        "",
        "## Arms",
        "",
        *[f"- `{arm}`: {arm_docs[arm]}" for arm in by_arm],
        "",
        f"## Held-out pass@k (%), mean ± {int(100 * LEVEL)} % t-interval over seeds",
        "",
        "With one seed a cell shows the run's value and, in brackets, a bootstrap interval over mazes.",
        "",
        f"Training sizes, {sizes_label(sets['in_dist']['sizes'])}:",
        "",
        passk_table(by_arm, "in_dist", [k for k in TABLE_KS if k <= eval_samples]),
        "",
        f"One size larger, {sizes_label(sets['larger']['sizes'])} (never trained on):",
        "",
        passk_table(by_arm, "larger", [k for k in TABLE_KS if k <= eval_samples]),
        "",
        "## Over training (train.py's metrics.jsonl, per run, then mean ± t-interval over seeds)",
        "",
        training_table(by_arm),
        "",
        "## Plots",
        "",
        f"![pass@k against k per arm]({rel['passk_vs_k']})",
        "",
        f"![held-out pass@1, reward, entropy and diversity over training]({rel['training']})",
        "",
        f"![eta against rollout accuracy, N = {n_responses}]({rel['eta']})",
        "",
        "## The paper's claims",
        "",
        "Rule (`study_report.judge`): the runs are paired (seed s of every arm starts from the same warm start "
        "and sees the same prompts and sampling seeds), so each part of a claim takes the per-seed differences "
        f"between its two arms and their mean with a {int(100 * LEVEL)} % paired t-interval; the part confirms "
        "when the interval lies above 0, refutes when it lies below 0, and cannot tell when it holds 0 (then the "
        "interval's half-width is the smallest effect this design could have seen: no difference larger than "
        "it), when an arm was not run or with fewer than 2 common seeds. Welch's unpaired interval is shown "
        "beside it. A claim with several parts confirms when all do and refutes when any does. pass@k is "
        "in-distribution; entropy and diversity are second-half means, reward the mean over all steps. No "
        "correction for testing several claims. The verdicts hold for this one warm start and this scale.",
        "",
    ]
    earlier_path, earlier_quotes = earlier
    for number, (text, spec) in enumerate(claims, start=1):
        parts = claim_parts(spec, by_arm, extended_arms)
        if any(arm not in by_arm for part in spec for arm in part[:2]) and number in earlier_quotes:
            lines.append(f"{number}. {text}: **not run at this scale**. The earlier 40-step study "
                         f"([{earlier_path}]({earlier_path})) measured: {earlier_quotes[number]}")
            continue
        lines.append(f"{number}. {text}: **{judge(parts)}**. " + "; ".join(describe_part(p) for p in parts) + ".")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
