"""Plots of training runs from their metrics.jsonl: one run's curves, several runs side by side.

curves.png shows the training reward and the held-out pass@k (Chen et al. 2021's unbiased
estimator, eval.pass_at_k) over RL steps; passk.png pass@k against k before and after RL, the
picture of the paper's Fig. 1 (Pass@k training keeps pass@k at large k). Figures are built with
matplotlib's Figure, never pyplot, so a caller's backend (a notebook's inline one) stays as it is.
"""

import json
import os

import yaml


def read_metrics(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_run(run_dir):
    """curves.png: training reward and held-out pass@k over steps; passk.png: pass@k against k,
    first against last evaluation."""
    from matplotlib.figure import Figure

    rows = read_metrics(run_dir)
    train = [r for r in rows if "train/reward" in r]
    evals = [r for r in rows if any(key.startswith("eval/pass@") for key in r)]
    ks = sorted(
        {int(key.split("@")[1]) for r in evals for key in r if key.startswith("eval/pass@")}
    )

    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    if train:
        left.plot([r["step"] for r in train], [r["train/reward"] for r in train], lw=1)
    left.set(xlabel="RL step", ylabel="mean reward", title="training reward")
    for k in ks:
        right.plot(
            [r["step"] for r in evals],
            [r.get(f"eval/pass@{k}") for r in evals],
            marker="o",
            label=f"pass@{k}",
        )
    right.set(xlabel="RL step", ylabel="held-out", title="held-out pass@k", ylim=(0, 1))
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "curves.png"), dpi=110)

    if evals:
        fig = Figure(figsize=(5.5, 4))
        ax = fig.subplots()
        for row, label in (
            (evals[0], f"warm start (step {evals[0]['step']})"),
            (evals[-1], f"after RL (step {evals[-1]['step']})"),
        ):
            ax.plot(ks, [row.get(f"eval/pass@{k}") for k in ks], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="k", ylabel="pass@k", title="held-out pass@k", ylim=(0, 1))
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(run_dir, "passk.png"), dpi=110)


def run_label(run_dir) -> str:
    """'<run name>: <advantage> k=<k>' from the run's config.yaml (a schedule's phases joined by
    ->)."""
    with open(os.path.join(run_dir, "config.yaml")) as f:
        rl = (yaml.safe_load(f) or {}).get("rl", {})
    phases = rl.get("schedule") or [{"advantage": rl.get("advantage"), "k": rl.get("k")}]
    recipe = " -> ".join(f"{p['advantage']} k={p['k']}" for p in phases)
    return f"{os.path.basename(os.path.normpath(run_dir))}: {recipe}"


def plot_runs(run_dirs, path):
    """One figure for several runs: held-out pass@1 and pass@(largest k) over steps, pass@k against
    k at the end."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2)
    for index, run_dir in enumerate(run_dirs):
        color = matplotlib.colormaps["tab10"](index % 10)
        plot_one_of_runs(left, right, run_dir, color, before_rl=index == 0)
    left.set(
        xlabel="RL step",
        ylabel="held-out pass@k",
        title="held-out pass@k over training",
        ylim=(0, 1),
    )
    right.set_xscale("log", base=2)
    right.set(
        xlabel="k", ylabel="held-out pass@k", title="pass@k against k, last evaluation", ylim=(0, 1)
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_one_of_runs(left, right, run_dir, color, before_rl: bool):
    """One run of plot_runs: its pass@1 and pass@(largest k) over steps on `left`, its last pass@k
    against k on `right` (and, if before_rl and it has a step-0 evaluation, that one in gray)."""
    label = run_label(run_dir)
    evals = [r for r in read_metrics(run_dir) if any(key.startswith("eval/pass@") for key in r)]
    if not evals:
        raise ValueError(f"{run_dir}: no held-out evaluation in metrics.jsonl yet")
    ks = sorted(
        {int(key.split("@")[1]) for r in evals for key in r if key.startswith("eval/pass@")}
    )
    steps = [r["step"] for r in evals]
    left.plot(
        steps,
        [r.get("eval/pass@1") for r in evals],
        marker="o",
        color=color,
        label=f"{label}, pass@1",
    )
    left.plot(
        steps,
        [r.get(f"eval/pass@{ks[-1]}") for r in evals],
        marker="s",
        ls="--",
        color=color,
        label=f"{label}, pass@{ks[-1]}",
    )
    right.plot(
        ks,
        [evals[-1].get(f"eval/pass@{k}") for k in ks],
        marker="o",
        color=color,
        label=f"{label} (step {steps[-1]})",
    )
    if before_rl and steps[0] == 0:
        right.plot(
            ks,
            [evals[0].get(f"eval/pass@{k}") for k in ks],
            marker=".",
            ls=":",
            color="gray",
            label=f"{os.path.basename(os.path.normpath(run_dir))} before RL (step 0)",
        )
