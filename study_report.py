"""The study's numbers and its report: per-run summaries, intervals over seeds, the verdict rule,
the tables, the plots and RESULTS.md (experiments.py runs the study and calls `write_report`).

Left out: a correction for testing several claims at once (each verdict stands alone).
"""

import json
import math
import os

import advantage
import eval as evaluation
import stats
from study_provenance import git_state, provenance, shown

# the same study's 24 runs before issue 24 changed the demo's numbers (results/study_before_issue24)
PREVIOUS = "docs/results/before-issue24.md"

TABLE_KS = (1, 2, 4, 8, 16, 32)
LEVEL = 0.95  # every interval in the report
TRAIN_METRICS = (
    "train/reward",
    "train/entropy",
    "train/wrong_distinct_frac",
    "train/all_agree_frac",
)
SECOND_HALF_METRICS = ("train/entropy", "train/wrong_distinct_frac", "train/all_agree_frac")
# what a finished run's evaluation writes in its run directory (experiments.run_job)
EVAL_FILE = "study_eval.json"
# a finished run's stored result: its evaluation, its trimmed metrics, its settings
RESULT_FILE = "result.json"
REPO = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- numbers


def mean_pass_at_k(correct: list[int], n: int, k: int) -> float:
    return sum(evaluation.pass_at_k(n, c, k) for c in correct) / len(correct)


def run_numbers(result_path: str) -> dict:
    """One run's scalars from its stored result: {in_dist,larger}/pass@k for k = 1..n and
    /cover@tau for tau in eval.COVER_TAUS (from the same per-maze counts), the train/* summaries,
    and
    its curves."""
    with open(result_path) as f:
        stored = json.load(f)
    result, rows = stored["eval"], stored["metrics"]
    n = result["n_samples"]
    numbers = {"seed": result["seed"], "result": result, "rows": rows}
    for name, chosen in result["sets"].items():
        for k in range(1, n + 1):
            numbers[f"{name}/pass@{k}"] = mean_pass_at_k(chosen["correct"], n, k)
        for tau in evaluation.COVER_TAUS:
            numbers[f"{name}/cover@{tau:g}"] = evaluation.cover_at(chosen["correct"], n, tau)
    train_rows = [r for r in rows if "train/reward" in r]
    for metric in TRAIN_METRICS:
        kept = train_rows[len(train_rows) // 2 :] if metric in SECOND_HALF_METRICS else train_rows
        values = [
            r[metric] for r in kept if isinstance(r.get(metric), float) and math.isfinite(r[metric])
        ]
        numbers[metric] = sum(values) / len(values) if values else float("nan")
    return numbers


def judge(parts: list[dict]) -> str:
    """The verdict rule: each part's 95 % paired t-interval of the per-seed differences better -
    worse.

    A part confirms when its interval lies above 0, refutes when it lies below 0, and cannot tell
    when it holds 0 or cannot be computed (an arm not run, fewer than 2 common seeds). A claim
    confirms when every part confirms, refutes when any part refutes, and otherwise cannot tell.
    """
    verdicts = []
    for part in parts:
        low, high = part.get("low", float("nan")), part.get("high", float("nan"))
        verdicts.append("confirms" if low > 0 else "refutes" if high < 0 else "cannot tell")
    if "refutes" in verdicts:
        return "refutes"
    return "confirms" if verdicts and all(v == "confirms" for v in verdicts) else "cannot tell"


def claim_parts(claim_parts_spec, by_arm: dict) -> list[dict]:
    """Each part (better, worse, metric) with its paired interval over the seeds both arms ran, and
    Welch's."""
    parts = []
    for better, worse, metric in claim_parts_spec:
        part = {"better": better, "worse": worse, "metric": metric}
        missing = [arm for arm in (better, worse) if arm not in by_arm]
        unmeasured = [
            arm
            for arm in (better, worse)
            if arm in by_arm and any(metric not in r for r in by_arm[arm])
        ]
        if missing:
            part["why"] = f"{', '.join(missing)} not run"
        elif unmeasured:  # pass@16 from fewer than 16 samples per maze
            part["why"] = f"{metric} not measured for {', '.join(unmeasured)}"
        # paired by seed: the runs of a seed share the warm start, the prompts and the sampling
        # seeds
        else:
            by_seed = [
                {run.get("seed", i): run[metric] for i, run in enumerate(by_arm[arm])}
                for arm in (better, worse)
            ]
            seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
            a, b = [by_seed[0][s] for s in seeds], [by_seed[1][s] for s in seeds]
            welch = stats.welch_interval(
                list(by_seed[0].values()), list(by_seed[1].values()), LEVEL
            )
            part.update(
                mean_better=_mean(list(by_seed[0].values())),
                mean_worse=_mean(list(by_seed[1].values())),
                welch_low=welch["low"],
                welch_high=welch["high"],
                n_pairs=len(seeds),
            )
            if seeds:
                part.update(stats.paired_interval(a, b, LEVEL))
            if len(seeds) < 2:
                part["why"] = "needs 2 or more seeds run by both arms"
        parts.append(part)
    return parts


def _mean(values):
    return sum(values) / len(values)


def scale(metric: str) -> float:
    percent = (
        "pass@" in metric
        or "cover@" in metric
        or metric.endswith("_frac")
        or metric == "train/reward"
    )
    return 100.0 if percent else 1.0


def describe_part(part: dict) -> str:
    """One part of a claim in words: the paired difference, its interval, Welch's beside it, and the
    design's power where the interval holds 0 (no difference larger than its half-width could be
    seen)."""
    metric, s = part["metric"], scale(part["metric"])
    if "mean_better" not in part:
        return f"{part['better']} vs {part['worse']} on {metric}: {part['why']}"
    unit = " points" if s == 100.0 else ""
    text = (
        f"{part['better']} {s * part['mean_better']:.2f} vs {part['worse']} "
        f"{s * part['mean_worse']:.2f} "
        f"on {metric}, paired difference {s * part.get('diff', float('nan')):+.2f}{unit}"
    )
    if "why" in part:
        return text + f" ({part['why']})"
    text += (
        f" (95 % paired CI {s * part['low']:+.2f} to {s * part['high']:+.2f} over "
        f"{part['n_pairs']} seeds; "
        f"Welch, unpaired: {s * part['welch_low']:+.2f} to {s * part['welch_high']:+.2f})"
    )
    if part["low"] <= 0 <= part["high"]:
        text += f"; no difference larger than {s * part['half']:.2f}{unit} either way could be seen"
    return text


# ----------------------------------------------------------------------------- the report


def cell(values: list[float], single_run_interval=None, factor=100.0, digits=1) -> str:
    """mean ± t half-width over seeds; one seed: the value and its bootstrap interval over mazes, in
    brackets."""
    if len(values) >= 2:
        interval = stats.seed_interval(values, LEVEL)
        return f"{factor * interval['mean']:.{digits}f} ± {factor * interval['half']:.{digits}f}"
    if single_run_interval is not None:
        low, high = single_run_interval
        low, high = f"{factor * low:.{digits}f}", f"{factor * high:.{digits}f}"
        return f"{factor * values[0]:.{digits}f} [{low}, {high}]"
    return f"{factor * values[0]:.{digits}f}"


def passk_table(by_arm: dict, set_name: str, ks) -> str:
    lines = [
        "| arm | seeds | " + " | ".join(f"pass@{k}" for k in ks) + " |",
        "|---" * (len(ks) + 2) + "|",
    ]
    for arm, runs in by_arm.items():
        cells = []
        for k in ks:
            interval = None
            if len(runs) == 1:
                chosen = runs[0]["result"]["sets"][set_name]
                row = evaluation.pass_at_k_intervals(
                    chosen["correct"], runs[0]["result"]["n_samples"], ks=[k]
                )[0]
                interval = (row["low"], row["high"])
            cells.append(cell([r[f"{set_name}/pass@{k}"] for r in runs], interval))
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cover_table(by_arm: dict, set_name: str) -> str:
    """cover@tau (%) per arm: the share of mazes with c/n >= tau, mean ± t half-width over seeds."""
    taus = evaluation.COVER_TAUS
    lines = [
        "| arm | seeds | " + " | ".join(f"cover@{tau:g}" for tau in taus) + " |",
        "|---" * (len(taus) + 2) + "|",
    ]
    for arm, runs in by_arm.items():
        intervals = [None] * len(taus)
        if len(runs) == 1:
            chosen = runs[0]["result"]["sets"][set_name]
            rows = evaluation.cover_intervals(chosen["correct"], runs[0]["result"]["n_samples"])
            intervals = [(row["low"], row["high"]) for row in rows]
        cells = [
            cell([r[f"{set_name}/cover@{tau:g}"] for r in runs], interval)
            for tau, interval in zip(taus, intervals)
        ]
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def not_run_yet(spec, by_arm: dict, planned: set, seeds: int) -> str:
    """'' when every arm of the parts ran all `seeds` seeds; else what is missing, as
    'arm N of M seeds'."""
    arms = dict.fromkeys(arm for part in spec for arm in part[:2])
    outside = [arm for arm in arms if arm not in planned]
    if outside:
        return f"not in this sweep's arms ({', '.join(outside)}; see --arms)"
    short = [(arm, len(by_arm.get(arm, []))) for arm in arms if len(by_arm.get(arm, [])) < seeds]
    if not short:
        return ""
    return (
        "not run yet (" + ", ".join(f"{arm} {count} of {seeds} seeds" for arm, count in short) + ")"
    )


def verdict_line(
    number, text: str, spec, by_arm: dict, planned: set, seeds: int, finding=False
) -> str:
    """A claim's (or finding's) line: its verdict and every part's paired difference and interval.
    Until every arm has all its seeds it says 'not run yet (N of M seeds)' and gives the parts only
    as provisional."""
    parts = claim_parts(spec, by_arm)
    described = "; ".join(describe_part(p) for p in parts)
    missing = not_run_yet(spec, by_arm, planned, seeds)
    label = f"{number}. {text}" if number else text
    if missing:
        provisional = any("mean_better" in p for p in parts)
        return f"{label}: **{missing}**." + (
            f" Provisional, on the seeds run so far: {described}." if provisional else ""
        )
    if finding:
        return (
            f"{label}: " + "; ".join(f"{describe_part(p)} [{part_verdict(p)}]" for p in parts) + "."
        )
    return f"{label}: **{judge(parts)}**. {described}."


def part_verdict(part: dict) -> str:
    """A finding's part in words: which arm is higher by the paired interval, or cannot tell."""
    low, high = part.get("low", float("nan")), part.get("high", float("nan"))
    return (
        f"{part['better']} higher"
        if low > 0
        else f"{part['worse']} higher"
        if high < 0
        else "cannot tell"
    )


def cpu_note(by_arm: dict) -> str:
    """The runs' measured CPU minutes: per run (median, range) and in all; results written before
    the job's attempts were summed count only their last attempt."""
    seconds = [run["result"].get("seconds", {}) for runs in by_arm.values() for run in runs]
    minutes = sorted((s.get("train_cpu", 0) + s.get("eval_cpu", 0)) / 60 for s in seconds)
    last_only = sum("attempts" not in s for s in seconds)
    return (
        f"{sum(minutes):.1f} CPU minutes in all, per run median "
        f"{minutes[len(minutes) // 2]:.1f} (from "
        f"{minutes[0]:.1f} to {minutes[-1]:.1f})"
        + (
            f"; {last_only} results written before the job's attempts "
            f"were summed count only their last attempt"
            if last_only
            else ""
        )
    )


def training_table(by_arm: dict) -> str:
    columns = [
        ("train/reward", "reward, all steps (%)", 100.0, 1),
        ("train/entropy", "entropy, 2nd half (nats)", 1.0, 3),
        ("train/wrong_distinct_frac", "distinct wrong answers, 2nd half (%)", 100.0, 1),
        ("train/all_agree_frac", "prompts whose N agree, 2nd half (%)", 100.0, 1),
    ]
    lines = [
        "| arm | seeds | " + " | ".join(c[1] for c in columns) + " |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for arm, runs in by_arm.items():
        cells = [
            cell([r[metric] for r in runs], factor=factor, digits=digits)
            for metric, _, factor, digits in columns
        ]
        lines.append(f"| {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def smooth(values: list[float], window: int) -> list[float]:
    """Centred moving average over the finite values in each window (train metrics are noisy step to
    step)."""
    half = window // 2
    out = []
    for i in range(len(values)):
        near = [v for v in values[max(0, i - half) : i + half + 1] if math.isfinite(v)]
        out.append(sum(near) / len(near) if near else float("nan"))
    return out


def seed_mean_curve(runs: list[dict], metric: str) -> tuple[list[int], list[float]]:
    """(steps, mean over seeds) of a logged metric, at the steps every seed logged it (a run's last
    value)."""
    per_step = {}
    for index, run in enumerate(runs):
        for row in run["rows"]:
            value = row.get(metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                # a resumed run may log a step twice: its last value counts
                per_step.setdefault(row["step"], {})[index] = float(value)
    steps = sorted(s for s, values in per_step.items() if len(values) == len(runs))
    return steps, [
        _mean([v for v in per_step[s].values() if math.isfinite(v)] or [float("nan")])
        for s in steps
    ]


def sizes_label(sizes: list[int]) -> str:
    return f"{sizes[0]}x{sizes[0]}" + (f" to {sizes[-1]}x{sizes[-1]}" if len(sizes) > 1 else "")


def plot_report(by_arm: dict, figure_dir: str, steps: int, arm_names, n_responses: int) -> dict:
    """passk_vs_k.png, training.png and eta.png in figure_dir; returns {name: path}."""
    import matplotlib

    os.makedirs(figure_dir, exist_ok=True)
    colors = {arm: matplotlib.colormaps["tab10"](i % 10) for i, arm in enumerate(arm_names)}
    paths = {
        name: os.path.join(figure_dir, f"{name}.png") for name in ("passk_vs_k", "training", "eta")
    }
    plot_passk_vs_k(by_arm, colors, paths["passk_vs_k"])
    plot_training(by_arm, colors, steps, paths["training"])
    advantage.plot_eta(paths["eta"], n=n_responses)
    return paths


def plot_passk_vs_k(by_arm: dict, colors: dict, path: str):
    """pass@k against k per arm (mean over seeds, with its t-band from 2 seeds on), one panel per
    held-out set: the training sizes and one size larger."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, set_name in zip(axes, ("in_dist", "larger")):
        for arm, runs in by_arm.items():
            chosen = runs[0]["result"]["sets"][set_name]
            n = runs[0]["result"]["n_samples"]
            ks = list(range(1, n + 1))
            means = [_mean([r[f"{set_name}/pass@{k}"] for r in runs]) for k in ks]
            ax.plot(
                ks, means, marker="o", ms=2.5, color=colors[arm], label=f"{arm} ({len(runs)} seeds)"
            )
            if len(runs) >= 2:
                intervals = [
                    stats.seed_interval([r[f"{set_name}/pass@{k}"] for r in runs], LEVEL)
                    for k in ks
                ]
                ax.fill_between(
                    ks,
                    [i["low"] for i in intervals],
                    [i["high"] for i in intervals],
                    color=colors[arm],
                    alpha=0.12,
                )
        ax.set_xscale("log", base=2)
        ax.set_xticks(evaluation.powers_of_two(n), [str(k) for k in evaluation.powers_of_two(n)])
        ax.set(
            xlabel="k",
            title=f"held-out {'training sizes' if set_name == 'in_dist' else 'one size larger'} "
            f"({sizes_label(chosen['sizes'])}, {len(chosen['correct'])} mazes)",
            ylim=(0, 1),
        )
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"pass@k (mean over seeds, {int(100 * LEVEL)} % band)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_training(by_arm: dict, colors: dict, steps: int, path: str):
    """The training curves per arm, mean over seeds: in-training pass@1, reward, entropy and the
    two diversity measures (train/* as a moving mean over a tenth of the steps)."""
    from matplotlib.figure import Figure

    panels = [
        ("eval/pass@1", "held-out pass@1 (in-training eval)"),
        ("train/reward", "training reward"),
        ("train/entropy", "mean token entropy"),
        ("train/wrong_distinct_frac", "distinct answers among wrong"),
        ("train/all_agree_frac", "prompts whose N responses agree"),
    ]
    window = max(1, steps // 10)
    fig = Figure(figsize=(14, 7.5))
    axes = fig.subplots(2, 3)
    for ax, (metric, title) in zip(axes.flat, panels):
        for arm, runs in by_arm.items():
            x, y = seed_mean_curve(runs, metric)
            if metric.startswith("train/"):
                y = smooth(y, window)
            ax.plot(
                x,
                y,
                color=colors[arm],
                marker="o" if metric.startswith("eval/") else None,
                ms=3,
                label=arm,
            )
        if "passk_then_pass1" in by_arm:
            # its switch to Pass@1
            ax.axvline(steps // 2, color=colors["passk_then_pass1"], ls=":", lw=1)
        ax.set(
            xlabel="RL step",
            title=title
            + (f" (moving mean of {window})" if metric.startswith("train/") and window > 1 else ""),
        )
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].axis("off")
    axes.flat[-1].legend(handles, labels, loc="center", fontsize=9, title="mean over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def verdicts(claims, findings, by_arm: dict, planned: set, seeds: int, earlier: str) -> list[str]:
    """The report's last sections: a verdict line per claim, the findings, the earlier study's
    note."""
    lines = [
        verdict_line(number, text, spec, by_arm, planned, seeds)
        for number, (text, spec) in enumerate(claims, start=1)
    ]
    lines += [
        "",
        "## Findings beyond the paper",
        "",
        "Each part is the paired difference between the two arms (first minus second) with its "
        "95 % paired t-interval, and which arm it shows higher (or cannot tell).",
        "",
    ]
    for text, spec in findings:
        lines += [verdict_line(None, text, spec, by_arm, planned, seeds, finding=True), ""]
    if earlier:
        lines += [
            "## Note",
            "",
            f"An earlier, smaller study (40 steps x 32 mazes a step, constant lr, "
            f"3 unpaired seeds) is kept for the record in [{earlier}]({earlier}); no verdict above "
            f"comes from it. The same study before issue 24 changed the demo's settings and "
            f"numerics (400 warm-start steps, lr 5e-5; 6 arms x 4 seeds) is in "
            f"[{PREVIOUS}]({PREVIOUS}).",
            "",
        ]
    return lines


def write_report(
    path: str,
    *,
    command: str,
    wall_s: float,
    config: str,
    base,
    runs: list[tuple[str, str]],
    steps: int,
    init: str,
    skipped: int,
    eval_samples: int,
    jobs: int,
    arm_docs: dict,
    claims: list,
    findings: list,
    arms,
    seeds: int,
    n_responses: int,
    k: int,
    earlier: str = "",
) -> str:
    """RESULTS.md (and its figures in docs/results/ beside it) from the runs' stored results.

    arms and seeds: what the sweep plans (every arm seeds 0 .. seeds - 1): a claim whose arms have
    fewer stored results says 'not run yet (N of M seeds)'. earlier: the path of an earlier study's
    report, linked as a note.
    """
    by_arm = {}
    for arm, result_path in runs:
        by_arm.setdefault(arm, []).append(run_numbers(result_path))
    report_dir = os.path.dirname(os.path.abspath(path))
    figures = plot_report(
        by_arm, os.path.join(report_dir, "docs", "results"), steps, arm_docs, n_responses
    )
    rel = {name: os.path.relpath(p, report_dir) for name, p in figures.items()}
    sizes = {name: sizes_label(s["sizes"]) for name, s in first_result(by_arm)["sets"].items()}
    lines = [
        "# Pass@1 vs Pass@k training on mazes: the study",
        "",
        "Written by `experiments.py` (its docstring describes the study); rerun the command to "
        "regenerate it.",
        "",
        *invocation_lines(command, wall_s, skipped, len(runs), jobs, by_arm),
        *setup_lines(config, init, base.rl, steps, n_responses, k, eval_samples, by_arm),
        "",
        *arm_lines(arms, arm_docs, by_arm, seeds),
        *table_sections(by_arm, sizes, eval_samples),
        *plot_lines(rel, n_responses),
        "## The paper's claims",
        "",
        CLAIMS_RULE,
        "",
    ]
    lines += verdicts(claims, findings, by_arm, set(arms), seeds, earlier)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def arm_lines(arms, arm_docs: dict, by_arm: dict, seeds: int) -> list[str]:
    """The report's arms section: what each arm is and how many of its seeds are stored."""
    return [
        "## Arms",
        "",
        *[
            f"- `{arm}`: {arm_docs[arm]} ({len(by_arm.get(arm, []))} of {seeds} seeds)"
            for arm in arms
        ],
        "",
    ]


def plot_lines(figures: dict, n_responses: int) -> list[str]:
    """The report's plots section: its three figures, by their paths relative to RESULTS.md."""
    return [
        "## Plots",
        "",
        f"![pass@k against k per arm]({figures['passk_vs_k']})",
        "",
        f"![held-out pass@1, reward, entropy and diversity over training]({figures['training']})",
        "",
        f"![eta against rollout accuracy, N = {n_responses}]({figures['eta']})",
        "",
    ]


def first_result(by_arm: dict) -> dict:
    """The first stored result: the evaluation settings every run of the study shares."""
    return next(iter(by_arm.values()))[0]["result"]


def invocation_lines(
    command: str, wall_s: float, skipped: int, n_runs: int, jobs: int, by_arm: dict
) -> list[str]:
    """The report's first bullets: the command, its wall time and CPU time, git, the runs' code."""
    git = git_state()
    code = [
        f for f in git["changed"] if f.endswith(".py") and "/" not in f or f.startswith("configs/")
    ]
    dirty = (
        f"; dirty tree: {len(git['changed'])} changed or untracked paths, code and configs "
        f"among them: {', '.join(code) or 'none'}"
        if git["changed"]
        else "; clean tree"
    )
    return [
        f"- command: `{command}`",
        f"- wall time: {wall_s / 60:.1f} min ({wall_s:.0f} s) for this invocation "
        f"({skipped} of {n_runs} runs were already finished and skipped); the runs' train and "
        f"eval took {cpu_note(by_arm)}, one thread per run, {jobs} runs at a time",
        f"- git: `{git['head']}`{dirty} (this report); sha1 of the top-level .py files: "
        f"`{git['code_sha1']}`",
        *provenance(by_arm),
    ]


def setup_lines(
    config: str, init: str, rl, steps: int, n_responses: int, k: int, eval_samples: int, by_arm
) -> list[str]:
    """The bullets on what every run did: its config and warm start, RL sizes, the evaluation."""
    first = first_result(by_arm)
    sets = first["sets"]
    seeds_run = sorted({run["seed"] for runs in by_arm.values() for run in runs})
    in_dist, larger = sets["in_dist"], sets["larger"]
    return [
        f"- config: `{os.path.relpath(config, REPO)}`"
        + (f"; warm start (every run's model.init): `{shown(init)}`" if init else ""),
        f"- every run: {steps} RL steps x {rl.prompts_per_step} prompts x N = {n_responses} "
        f"responses, lr {rl.lr} ({rl.lr_schedule} after {rl.warmup} warmup steps), "
        f"{rl.minibatches} mini-batches, seeds {', '.join(map(str, seeds_run))}; Pass@k arms use "
        f"k = {k}",
        f"- held-out evaluation: {eval_samples} samples per maze at temperature "
        f"{first['temperature']}, top-p {first['top_p']}, unbiased pass@k; training sizes "
        f"{sizes_label(in_dist['sizes'])} ({len(in_dist['correct'])} mazes, at most "
        f"{in_dist['max_new_tokens']} tokens) and {sizes_label(larger['sizes'])} "
        f"({len(larger['correct'])} mazes, at most {larger['max_new_tokens']} tokens); the "
        "training-size mazes are task.seed's held-out set, which no warm-start or RL stream draws",
    ]


def table_sections(by_arm: dict, sizes: dict, eval_samples: int) -> list[str]:
    """The report's tables: held-out pass@k and cover@tau per set, and the training metrics."""
    ks = [k for k in TABLE_KS if k <= eval_samples]
    return [
        f"## Held-out pass@k (%), mean ± {int(100 * LEVEL)} % t-interval over seeds",
        "",
        "With one seed a cell shows the run's value and, in brackets, a bootstrap interval over "
        "mazes.",
        "",
        f"Training sizes, {sizes['in_dist']}:",
        "",
        passk_table(by_arm, "in_dist", ks),
        "",
        f"One size larger, {sizes['larger']} (never trained on):",
        "",
        passk_table(by_arm, "larger", ks),
        "",
        f"## Held-out cover@tau (%): the share of mazes solved in at least tau of their "
        f"{eval_samples} samples",
        "",
        "Cover@tau (Dragoi et al. 2025, arXiv 2510.08325) from the same samples as pass@k: pass@k "
        "can rise because many mazes gain a little or a few gain a lot; cover@tau at high tau "
        "counts the mazes solved reliably.",
        "",
        f"Training sizes, {sizes['in_dist']}:",
        "",
        cover_table(by_arm, "in_dist"),
        "",
        f"One size larger, {sizes['larger']}:",
        "",
        cover_table(by_arm, "larger"),
        "",
        "## Over training (train.py's metrics.jsonl, per run, then mean ± t-interval over seeds)",
        "",
        training_table(by_arm),
        "",
    ]


CLAIMS_RULE = (
    "Rule (`study_report.judge`): the runs are paired (seed s of every arm starts from the same "
    "warm start and sees the same prompts and sampling seeds), so each part of a claim takes the "
    "per-seed differences between its two arms and their mean with a "
    f"{int(100 * LEVEL)} % paired t-interval; the part confirms when the interval lies above 0, "
    "refutes when it lies below 0, and cannot tell when it holds 0 (then the interval's half-width "
    "is the smallest effect this design could have seen: no difference larger than it) or with "
    "fewer than 2 common seeds; until every arm of a claim has all its seeds, the claim says not "
    "run yet (N of M seeds) and its numbers are provisional. Welch's unpaired interval is shown "
    "beside it. A claim with several parts confirms when all do and refutes when any does. pass@k "
    "is in-distribution; entropy and diversity are second-half means, reward the mean over all "
    "steps. No correction for testing several claims. The verdicts hold for this one warm start "
    "and this scale."
)
